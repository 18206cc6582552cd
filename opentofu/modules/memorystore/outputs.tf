output "host" {
  description = "Private IP of the primary endpoint."
  value       = google_redis_instance.this.host
}

output "port" {
  description = "Port: 6378 with in-transit encryption."
  value       = google_redis_instance.this.port
}

output "redis_url" {
  description = "REDIS_URL for the service (goes into the Kubernetes Secret licensed-secrets): rediss:// (TLS, verified against server_ca_pem) with the AUTH string."
  value       = "rediss://:${google_redis_instance.this.auth_string}@${google_redis_instance.this.host}:${google_redis_instance.this.port}"
  sensitive   = true
}

output "server_ca_pem" {
  description = "PEM of the instance's server CAs (all of them, so a CA rotation is covered): the Secret licensed-tls, key redis-ca.pem, read through REDIS_CA_FILE=/etc/licensed/tls/redis-ca.pem."
  value       = join("\n", [for c in google_redis_instance.this.server_ca_certs : c.cert])
  sensitive   = true
}
