"""Code shared by the consumer and the API: settings, the Redis read-model store, MySQL access, logging."""
