# Memorystore for Redis: the read model (seat counts, TTL sessions). It is
# derived data - `licensed project --rebuild` recreates it from the log - so
# it has no persistence. Private (private services access), AUTH on,
# in-transit encryption (TLS on port 6378, server authentication).

resource "google_redis_instance" "this" {
  project        = var.project_id
  name           = var.name
  region         = var.region
  tier           = var.tier
  memory_size_gb = var.memory_size_gb
  redis_version  = var.redis_version
  display_name   = "License Ledger read model"
  labels         = var.labels

  connect_mode       = "PRIVATE_SERVICE_ACCESS"
  authorized_network = var.network_id
  reserved_ip_range  = var.reserved_ip_range_name

  auth_enabled            = true
  transit_encryption_mode = "SERVER_AUTHENTICATION"

  redis_configs = {
    # Never evict: session keys carry TTLs, but evicting one before its
    # deadline would show a live seat as free. A full instance refuses writes
    # (the projector retries and alerts) instead of silently losing state.
    "maxmemory-policy" = "noeviction"
  }

  maintenance_policy {
    weekly_maintenance_window {
      day = "SUNDAY"
      start_time {
        hours   = 3
        minutes = 0
        seconds = 0
        nanos   = 0
      }
    }
  }
}
