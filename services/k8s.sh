#!/usr/bin/env bash
# A real single-node Kubernetes v1.34 on this machine, for the deployment runs: etcd (Debian),
# kube-apiserver, controller manager, scheduler, kubelet and kube-proxy built from the Go module
# proxy (services/k8s-build.sh), containerd shared with the Docker engine (services/docker.sh),
# the CNI bridge plugin, CoreDNS; images moved from Docker to containerd, no registry.
#
#   services/k8s.sh up       node Ready, CoreDNS, the stand-ins (k8s/overlays/local-deps), topics,
#                            then ums-find: kubectl apply -k k8s/overlays/local (the dev overlay
#                            with plaintext links to the stand-ins)
#   services/k8s.sh node     only the node (Ready, CoreDNS): no workloads
#   services/k8s.sh down     stop what `up` started and remove its state (pods, iptables, bridge)
#   services/k8s.sh env      variables the deploy tests use (KUBECONFIG, addresses reachable from this host)
#   services/k8s.sh kubectl ARGS...   kubectl against this cluster
#   services/k8s.sh status
#
# Traffic stays on this host: the API server, kubelet and etcd listen on loopback or on the
# interface `ums-k8s0` (10.250.0.1, a bridge without ports) this script creates; pods on the bridge cni0.
# State lives in $UMS_DEPLOY_RUN_DIR/k8s (default .run/k8s) and /var/lib/kubelet.
set -euo pipefail
LOG_TAG=k8s
# shellcheck source=services/deploy-lib.sh
. "$(dirname "$0")/deploy-lib.sh"
eval "$("$ROOT/services/k8s-build.sh" paths)"

K=$RUN_DIR/k8s
P=$K/pki
NODE_IP=${UMS_K8S_NODE_IP:-10.250.0.1}
NODE_IF=ums-k8s0
NODE_NAME=ums-find-node
POD_CIDR=10.244.0.0/24
SERVICE_CIDR=10.96.0.0/16
DNS_IP=10.96.0.10
ETCD_PORT=${UMS_K8S_ETCD_PORT:-23790}
APP_NS=ums-find-dev
KUBECTL=("$K8S_BIN/kubectl" --kubeconfig "$K/admin.kubeconfig")

kc() { "${KUBECTL[@]}" "$@"; }

prerequisites() {
  "$ROOT/services/docker.sh" up
  "$ROOT/services/k8s-build.sh" all
  apt_install etcd-server etcd-client containernetworking-plugins conntrack iptables socat openssl iproute2
}

interface() {  # the node's address, on an interface of its own (no dependency on the outside one);
  # a bridge without ports, as this kernel has no `dummy` driver
  ip link show "$NODE_IF" >/dev/null 2>&1 || ip link add "$NODE_IF" type bridge
  [[ $(ip -4 addr show dev "$NODE_IF") == *"inet $NODE_IP/"* ]] || ip addr add "$NODE_IP/32" dev "$NODE_IF"
  ip link set "$NODE_IF" up
}

pki() {  # a CA, a certificate per component, kubeconfigs; made once per state directory
  mkdir -p "$P"
  if [ ! -f "$P/.complete" ]; then
    log "PKI in $P"
    (
      cd "$P"
      openssl req -x509 -newkey rsa:2048 -nodes -keyout ca.key -out ca.crt -days 365 -subj "/CN=ums-find-local-ca" 2>/dev/null
      mk() {  # NAME CN [O] [SAN]
        openssl req -newkey rsa:2048 -nodes -keyout "$1.key" -out "$1.csr" -subj "/CN=$2${3:+/O=$3}" 2>/dev/null
        if [ -n "${4:-}" ]; then printf 'subjectAltName=%s\nextendedKeyUsage=serverAuth,clientAuth\n' "$4" >"$1.ext"
        else printf 'extendedKeyUsage=clientAuth\n' >"$1.ext"; fi
        openssl x509 -req -in "$1.csr" -CA ca.crt -CAkey ca.key -CAcreateserial -out "$1.crt" -days 365 \
          -extfile "$1.ext" 2>/dev/null
      }
      mk apiserver kube-apiserver "" "DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local,DNS:localhost,IP:127.0.0.1,IP:10.96.0.1,IP:$NODE_IP"
      mk kubelet-serving "system:node:$NODE_NAME" system:nodes "DNS:$NODE_NAME,IP:$NODE_IP"
      mk admin admin system:masters
      mk node "system:node:$NODE_NAME" system:nodes
      mk kcm system:kube-controller-manager
      mk sched system:kube-scheduler
      mk proxy system:kube-proxy
      openssl genrsa -out sa.key 2048 2>/dev/null
      openssl rsa -in sa.key -pubout -out sa.pub 2>/dev/null
    )
    local u f
    for u in admin node kcm sched proxy; do
      f=$K/$u.kubeconfig
      "$K8S_BIN/kubectl" config set-cluster local --server="https://$NODE_IP:6443" --certificate-authority="$P/ca.crt" \
        --embed-certs --kubeconfig="$f" >/dev/null
      "$K8S_BIN/kubectl" config set-credentials u --client-certificate="$P/$u.crt" --client-key="$P/$u.key" \
        --embed-certs --kubeconfig="$f" >/dev/null
      "$K8S_BIN/kubectl" config set-context default --cluster=local --user=u --kubeconfig="$f" >/dev/null
      "$K8S_BIN/kubectl" config use-context default --kubeconfig="$f" >/dev/null
    done
    touch "$P/.complete"
  fi
}

start() {  # start NAME COMMAND...: in the background, pid in $K/NAME.pid, log in $K/NAME.log
  local name=$1; shift
  if alive "$K/$name.pid"; then return; fi
  log "starting $name"
  nohup "$@" >"$K/$name.log" 2>&1 </dev/null &
  echo $! >"$K/$name.pid"
}

control_plane() {
  start etcd etcd --name local --data-dir "$K/etcd" \
    --listen-client-urls "http://127.0.0.1:$ETCD_PORT" --advertise-client-urls "http://127.0.0.1:$ETCD_PORT" \
    --listen-peer-urls http://127.0.0.1:$((ETCD_PORT + 10)) --initial-advertise-peer-urls http://127.0.0.1:$((ETCD_PORT + 10)) \
    --initial-cluster local=http://127.0.0.1:$((ETCD_PORT + 10))
  wait_until 30 etcd env ETCDCTL_API=3 etcdctl --endpoints="127.0.0.1:$ETCD_PORT" endpoint health
  if ! alive "$K/apiserver.pid"; then  # controllers that outlived an API server keep stale caches
    stop_pidfile kcm "$K/kcm.pid"
    stop_pidfile scheduler "$K/scheduler.pid"
  fi
  start apiserver "$K8S_BIN/kube-apiserver" --advertise-address="$NODE_IP" --bind-address="$NODE_IP" --secure-port=6443 \
    --etcd-servers="http://127.0.0.1:$ETCD_PORT" --service-cluster-ip-range="$SERVICE_CIDR" \
    --tls-cert-file="$P/apiserver.crt" --tls-private-key-file="$P/apiserver.key" --client-ca-file="$P/ca.crt" \
    --kubelet-client-certificate="$P/admin.crt" --kubelet-client-key="$P/admin.key" --kubelet-certificate-authority="$P/ca.crt" \
    --kubelet-preferred-address-types=InternalIP \
    --service-account-issuer=https://kubernetes.default.svc.cluster.local \
    --service-account-key-file="$P/sa.pub" --service-account-signing-key-file="$P/sa.key" \
    --authorization-mode=Node,RBAC --enable-admission-plugins=NodeRestriction --allow-privileged=true
  wait_until 120 kube-apiserver kc get --raw /readyz
  start kcm "$K8S_BIN/kube-controller-manager" --kubeconfig="$K/kcm.kubeconfig" --bind-address=127.0.0.1 \
    --authentication-kubeconfig="$K/kcm.kubeconfig" --authorization-kubeconfig="$K/kcm.kubeconfig" \
    --service-account-private-key-file="$P/sa.key" --root-ca-file="$P/ca.crt" \
    --cluster-signing-cert-file="$P/ca.crt" --cluster-signing-key-file="$P/ca.key" \
    --use-service-account-credentials=true --service-cluster-ip-range="$SERVICE_CIDR" --leader-elect=false
  start scheduler "$K8S_BIN/kube-scheduler" --kubeconfig="$K/sched.kubeconfig" --bind-address=127.0.0.1 \
    --authentication-kubeconfig="$K/sched.kubeconfig" --authorization-kubeconfig="$K/sched.kubeconfig" --leader-elect=false
}

import_images() {  # docker -> containerd's k8s.io namespace (what kubelet sees); once per image id
  local img id ref mark
  mkdir -p "$K/imported"
  for img in "$@"; do
    id=$(docker image inspect -f '{{.Id}}' "$img")
    ref=docker.io/$img
    [[ $img == */* ]] || ref=docker.io/library/$img
    mark=$K/imported/$(echo "$img" | tr '/:' '__')
    if [ "$(cat "$mark" 2>/dev/null)" = "$id" ] && ctr -n k8s.io images ls -q "name==$ref" | grep -x "$ref" >/dev/null; then
      continue
    fi
    log "importing $img into containerd"
    docker save "$img" | ctr -n k8s.io images import - >/dev/null
    echo "$id" >"$mark"
  done
}

node_images() {
  local ctx=$RUN_DIR/docker/context/node
  mkdir -p "$ctx/pause" "$ctx/coredns"
  cp "$PAUSE_BIN" "$ctx/pause/pause"
  printf 'FROM scratch\nCOPY pause /pause\nUSER 65535:65535\nENTRYPOINT ["/pause"]\n' >"$ctx/pause/Dockerfile"
  cp "$COREDNS_BIN" "$ctx/coredns/coredns"
  printf 'FROM scratch\nCOPY coredns /coredns\nENTRYPOINT ["/coredns"]\n' >"$ctx/coredns/Dockerfile"
  DOCKER_BUILDKIT=0 docker build -q -t local/pause:3.10 "$ctx/pause" >/dev/null 2>&1 || die "pause image"
  DOCKER_BUILDKIT=0 docker build -q -t "local/coredns:$COREDNS_VERSION" "$ctx/coredns" >/dev/null 2>&1 || die "coredns image"
  import_images local/pause:3.10 "local/coredns:$COREDNS_VERSION"
}

node() {
  mkdir -p /etc/cni/net.d "$K/kubelet"
  # dockerd sets the FORWARD policy to DROP; bridged pod traffic crosses iptables: let cni0's through
  iptables -C DOCKER-USER -i cni0 -j ACCEPT 2>/dev/null || iptables -I DOCKER-USER -i cni0 -j ACCEPT
  iptables -C DOCKER-USER -o cni0 -j ACCEPT 2>/dev/null || iptables -I DOCKER-USER -o cni0 -j ACCEPT
  cat >/etc/cni/net.d/10-ums-find.conflist <<JSON
{ "cniVersion": "0.4.0", "name": "ums-find",
  "plugins": [
    { "type": "bridge", "bridge": "cni0", "isGateway": true, "ipMasq": true, "hairpinMode": true,
      "ipam": { "type": "host-local", "ranges": [[{"subnet": "$POD_CIDR"}]], "routes": [{"dst": "0.0.0.0/0"}] } },
    { "type": "portmap", "capabilities": {"portMappings": true} } ] }
JSON
  cat >"$K/kubelet/config.yaml" <<YAML
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
address: $NODE_IP
healthzBindAddress: 127.0.0.1
cgroupDriver: cgroupfs
failSwapOn: false
containerRuntimeEndpoint: unix:///run/containerd/containerd.sock
tlsCertFile: $P/kubelet-serving.crt
tlsPrivateKeyFile: $P/kubelet-serving.key
authentication:
  anonymous: {enabled: false}
  webhook: {enabled: true}
  x509: {clientCAFile: $P/ca.crt}
authorization: {mode: Webhook}
clusterDomain: cluster.local
clusterDNS: [$DNS_IP]
# root here lacks CAP_SYS_RESOURCE: leave kubelet's own oom_score_adj alone
oomScoreAdj: 0
podCIDR: $POD_CIDR
resolvConf: /etc/resolv.conf
evictionHard: {memory.available: "100Mi", nodefs.available: "1%", imagefs.available: "1%"}
# the images cannot be pulled again: never garbage-collect them
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
YAML
  start kubelet "$K8S_BIN/kubelet" --config="$K/kubelet/config.yaml" --kubeconfig="$K/node.kubeconfig" \
    --hostname-override="$NODE_NAME" --node-ip="$NODE_IP" --root-dir=/var/lib/kubelet --v=1
  start proxy "$K8S_BIN/kube-proxy" --kubeconfig="$K/proxy.kubeconfig" --cluster-cidr=10.244.0.0/16 \
    --proxy-mode=iptables --conntrack-max-per-core=0 --hostname-override="$NODE_NAME" \
    --bind-address="$NODE_IP" --healthz-bind-address=127.0.0.1:10256 --metrics-bind-address=127.0.0.1:10249 \
    --nodeport-addresses="$NODE_IP/32"
  wait_until 60 "node registration" kc get node "$NODE_NAME"
  kc wait --for=condition=Ready "node/$NODE_NAME" --timeout=120s >/dev/null
  kc apply -f "$ROOT/services/k8s/coredns.yaml" >/dev/null
  kc -n kube-system rollout status deploy/coredns --timeout=180s >/dev/null
}

secret_files() {  # k8s/base/secrets/*.env (git-ignored) from their templates, if missing: the
  # generated MySQL password (the stand-in's read-only user gets it too); no Kafka or Redis
  # passwords, as the stand-ins have no users
  local dir=$ROOT/k8s/base/secrets example target password
  password=$(head -c 18 /dev/urandom | base64 | tr -d '/+=')
  for example in "$dir"/*.env.example; do
    target=${example%.example}
    [ -f "$target" ] && continue
    log "writing $(basename "$target") (generated MySQL password, no Kafka/Redis passwords: the stand-ins have none)"
    sed -e '/^#/d' -e "s/^UMS_MYSQL_PASSWORD=.*/UMS_MYSQL_PASSWORD=$password/" "$example" >"$target"
    chmod 600 "$target"
  done
}

mysql_password() {  # the read-only user's password, from ums-find's Secrets as the overlay renders them
  kc kustomize "$ROOT/k8s/overlays/local" | kc create --dry-run=client -o json -f - \
    | python3 "$ROOT/services/k8s/secret-value.py" UMS_MYSQL_PASSWORD
}

deps() {
  secret_files
  import_images ums-find-standin/zookeeper:3.8.4 ums-find-standin/kafka:3.9.1 ums-find-standin/mysql:mariadb \
    ums-find-standin/redis:7 ums-find:0.1.0
  kc apply -k "$ROOT/k8s/overlays/local-deps" >/dev/null
  kc -n ums-data-dev create configmap mysql-init --from-file=01-schema.sql="$ROOT/services/mysql/schema.sql" \
    --from-file=02-users.sh="$ROOT/docker/mysql/02-users.sh" --dry-run=client -o yaml | kc apply -f - >/dev/null
  if ! kc -n ums-data-dev get secret mysql-standin >/dev/null 2>&1; then
    kc -n ums-data-dev create secret generic mysql-standin \
      --from-literal=MYSQL_ROOT_PASSWORD="$(head -c 18 /dev/urandom | base64 | tr -d '/+=')" \
      --from-literal=UMS_MYSQL_USER=ums_find_ro --from-literal=UMS_MYSQL_PASSWORD="$(mysql_password)" \
      --from-literal=UMS_ADDSERVICE_MYSQL_USER=ums_addservice \
      --from-literal=UMS_ADDSERVICE_MYSQL_PASSWORD="$(head -c 18 /dev/urandom | base64 | tr -d '/+=')" >/dev/null
  fi
  local d
  for d in kafka-dev/zookeeper kafka-dev/kafka ums-data-dev/redis ums-data-dev/mysql; do
    kc -n "${d%/*}" rollout status "deploy/${d#*/}" --timeout=300s >/dev/null || die "stand-in ${d#*/} not Available"
  done
  # the topics, as compose's `topics` service makes them: ums-find's own command, in a throw-away pod
  if [[ $(kc -n kafka-dev get pod topics -o jsonpath='{.status.phase}' 2>/dev/null) != Succeeded ]]; then
    kc -n kafka-dev delete pod topics --ignore-not-found >/dev/null
    kc -n kafka-dev run topics --image=ums-find:0.1.0 --image-pull-policy=IfNotPresent --restart=Never \
      --env=UMS_KAFKA_BOOTSTRAP=kafka:9092 --overrides='{"spec":{"securityContext":{"runAsNonRoot":true,"seccompProfile":{"type":"RuntimeDefault"}},"containers":[{"name":"topics","image":"ums-find:0.1.0","imagePullPolicy":"IfNotPresent","command":["ums-find","topics","--partitions","6"],"env":[{"name":"UMS_KAFKA_BOOTSTRAP","value":"kafka:9092"}],"securityContext":{"allowPrivilegeEscalation":false,"capabilities":{"drop":["ALL"]}}}]}}' >/dev/null
    kc -n kafka-dev wait --for=jsonpath='{.status.phase}'=Succeeded pod/topics --timeout=180s >/dev/null \
      || { kc -n kafka-dev logs topics >&2 || true; die "creating the topics failed"; }
  fi
}

app() {
  import_images ums-find:0.1.0
  kc apply -k "$ROOT/k8s/overlays/local" >/dev/null
  kc -n "$APP_NS" wait --for=condition=Available deploy --all --timeout=300s >/dev/null \
    || { kc -n "$APP_NS" get pods -o wide >&2; die "ums-find Deployments not Available"; }
}

up() {
  local t0=$SECONDS
  prerequisites
  "$ROOT/docker/build-images.sh" all
  mkdir -p "$K"
  interface
  pki
  control_plane
  node_images
  node
  log "node Ready with CoreDNS after $((SECONDS - t0))s"
  [ "${1:-}" = node ] && return
  deps
  app
  log "ums-find Deployments Available after $((SECONDS - t0))s"
}

down() {
  kc delete namespace "$APP_NS" kafka-dev ums-data-dev --wait=false >/dev/null 2>&1 || true
  local n
  for n in proxy kubelet scheduler kcm apiserver etcd; do stop_pidfile "$n" "$K/$n.pid"; done
  "$K8S_BIN/kube-proxy" --cleanup >/dev/null 2>&1 || true
  # pod containers outlive kubelet: remove the CRI sandboxes and containers
  local t c m
  for t in $(ctr -n k8s.io tasks ls -q 2>/dev/null); do ctr -n k8s.io tasks kill -s SIGKILL "$t" >/dev/null 2>&1 || true; done
  for c in $(ctr -n k8s.io containers ls -q 2>/dev/null); do
    for _ in 1 2 3 4 5; do ctr -n k8s.io tasks delete "$c" >/dev/null 2>&1 && break; sleep 0.3; done
    ctr -n k8s.io containers delete "$c" >/dev/null 2>&1 || true
  done
  for m in $(mount | awk '{print $3}' | grep -E '^/var/lib/kubelet/|^/run/containerd/io.containerd.grpc.v1.cri/sandboxes/|^/run/netns/cni-' | sort -r); do
    umount "$m" 2>/dev/null || true
  done
  mountpoint -q /var/lib/kubelet && umount /var/lib/kubelet  # kubelet bind-mounts its own root dir
  rm -f /run/netns/cni-* /etc/cni/net.d/10-ums-find.conflist
  ip link del cni0 2>/dev/null || true
  ip link del "$NODE_IF" 2>/dev/null || true
  iptables -D DOCKER-USER -i cni0 -j ACCEPT 2>/dev/null || true
  iptables -D DOCKER-USER -o cni0 -j ACCEPT 2>/dev/null || true
  rm -rf /var/lib/kubelet /var/lib/cni/networks/ums-find "$K/etcd"
  # kubelet raises these kernel settings (protectKernelDefaults false): put Linux's defaults back
  echo 0 >/proc/sys/vm/overcommit_memory; echo 0 >/proc/sys/kernel/panic_on_oops
  log "node stopped (PKI kept in $P; images kept in containerd)"
}

print_env() {
  local kafka_ip redis_ip api_ip
  kafka_ip=$(kc -n kafka-dev get pod -l app=kafka -o jsonpath='{.items[0].status.podIP}')
  redis_ip=$(kc -n ums-data-dev get svc redis -o jsonpath='{.spec.clusterIP}')
  api_ip=$(kc -n "$APP_NS" get svc ums-find-api -o jsonpath='{.spec.clusterIP}')
  echo "KUBECONFIG=$K/admin.kubeconfig"
  echo "UMS_K8S_KUBECTL=$K8S_BIN/kubectl"
  echo "UMS_K8S_NAMESPACE=$APP_NS"
  echo "UMS_KAFKA_BOOTSTRAP=$kafka_ip:29092"
  echo "UMS_REDIS_URL=redis://$redis_ip:6379/0"
  echo "UMS_K8S_API_URL=http://$api_ip:8080"
  # the AddService stand-in's writer on the MySQL stand-in (generated, local to this node)
  echo "UMS_MYSQL_HOST=$(kc -n ums-data-dev get svc mysql -o jsonpath='{.spec.clusterIP}')"
  echo "UMS_ADDSERVICE_MYSQL_USER=$(kc -n ums-data-dev get secret mysql-standin -o jsonpath='{.data.UMS_ADDSERVICE_MYSQL_USER}' | base64 -d)"
  echo "UMS_ADDSERVICE_MYSQL_PASSWORD=$(kc -n ums-data-dev get secret mysql-standin -o jsonpath='{.data.UMS_ADDSERVICE_MYSQL_PASSWORD}' | base64 -d)"
  echo "UMS_VEGETA=$VEGETA_BIN"
}

case ${1:-} in
  up) up ;;
  node) up node ;;
  down) down ;;
  env) print_env ;;
  kubectl) shift; kc "$@" ;;
  status) if alive "$K/apiserver.pid"; then kc get nodes,pods -A -o wide; else echo "k8s: not running"; fi ;;
  *) echo "usage: $0 up|node|down|env|kubectl ARGS...|status" >&2; exit 2 ;;
esac
