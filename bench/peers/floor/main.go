// The rig's floor past capacity: a server that answers every request with the 503 our API sheds with,
// and does nothing else (bench/rig_floor.py). Go's net/http on the API's pinned core, driven by the same
// vegeta: what the client measures from it is the client's and the loopback's share of any 503's latency.
package main

import (
	"log"
	"net/http"
	"os"
)

func main() {
	body := []byte(`{"type": "https://ums-find.dev/problems/overloaded", "title": "Service Unavailable", ` +
		`"status": 503, "detail": "the API is over its capacity; retry later"}`)
	http.HandleFunc("/livez", func(w http.ResponseWriter, r *http.Request) {
		w.Write([]byte("ok\n"))
	})
	http.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("Content-Type", "application/problem+json")
		h.Set("Retry-After", "1")
		h.Set("Cache-Control", "no-store")
		w.WriteHeader(http.StatusServiceUnavailable)
		w.Write(body)
	})
	log.Fatal(http.ListenAndServe(os.Args[1], nil))
}
