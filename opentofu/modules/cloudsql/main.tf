# Cloud SQL for PostgreSQL 15: the event log, the source of truth. Private IP
# only, TLS required, automated backups with point-in-time recovery, and
# idle_in_transaction_session_timeout so a stuck transaction cannot stall
# log tailing for long (ARCHITECTURE.md, invariant 4).
#
# Clients verify the server (sslmode=verify-full): the server certificate is
# issued by Google's shared CA hierarchy (server_ca_mode
# GOOGLE_MANAGED_CAS_CA) for the instance's DNS name, which a private Cloud
# DNS zone below resolves to the private IP inside the VPC. The CA bundle is
# the output server_ca_pem (Secret licensed-tls, key postgres-ca.pem).
#
# Two built-in users: the migration user (the migrate Job; creates the
# ledger_owner/ledger_writer roles and the tables) and the app user (every
# other workload; `licensed migrate --grant-writer <app user>` grants it
# ledger_writer, which cannot UPDATE, DELETE or TRUNCATE the log).

resource "google_sql_database_instance" "this" {
  #checkov:skip=CKV_GCP_6:ssl_mode ENCRYPTED_ONLY rejects every unencrypted connection and clients verify the server (sslmode=verify-full against the CAS-issued certificate); client certificates (the only mode this check accepts) would need per-pod certificate distribution, and the instance has a private IP only with password authentication.
  #checkov:skip=CKV_GCP_79:POSTGRES_15 is the version the service is built and tested against; a major upgrade is a deliberate, tested change.
  #checkov:skip=CKV2_GCP_13:log_duration would log every statement at heartbeat rates (thousands per second); statement latency is covered by Query Insights.
  project             = var.project_id
  name                = var.name
  region              = var.region
  database_version    = "POSTGRES_15"
  deletion_protection = true

  settings {
    tier                        = var.tier
    edition                     = "ENTERPRISE"
    availability_type           = var.availability_type
    disk_type                   = "PD_SSD"
    disk_size                   = var.disk_size_gb
    disk_autoresize             = true
    deletion_protection_enabled = true
    user_labels                 = var.labels

    ip_configuration {
      ipv4_enabled                                  = false
      private_network                               = var.network_id
      ssl_mode                                      = "ENCRYPTED_ONLY"
      server_ca_mode                                = "GOOGLE_MANAGED_CAS_CA"
      enable_private_path_for_google_cloud_services = false
    }

    backup_configuration {
      enabled                        = true
      start_time                     = var.backup_start_time
      point_in_time_recovery_enabled = true
      transaction_log_retention_days = var.transaction_log_retention_days

      backup_retention_settings {
        retained_backups = var.retained_backups
        retention_unit   = "COUNT"
      }
    }

    maintenance_window {
      day          = 7
      hour         = 3
      update_track = "stable"
    }

    insights_config {
      query_insights_enabled  = true
      record_application_tags = false
      record_client_address   = false
    }

    # Ends a session that sits idle inside an open transaction, in ms.
    database_flags {
      name  = "idle_in_transaction_session_timeout"
      value = tostring(var.idle_in_transaction_session_timeout_ms)
    }

    database_flags {
      name  = "max_connections"
      value = tostring(var.max_connections)
    }

    # Audit-relevant logging of the database itself.
    database_flags {
      name  = "log_checkpoints"
      value = "on"
    }

    database_flags {
      name  = "log_connections"
      value = "on"
    }

    database_flags {
      name  = "log_hostname"
      value = "on"
    }

    database_flags {
      name  = "log_disconnections"
      value = "on"
    }

    database_flags {
      name  = "log_lock_waits"
      value = "on"
    }

    database_flags {
      name  = "log_min_messages"
      value = "error"
    }

    database_flags {
      name  = "log_temp_files"
      value = "0"
    }

    database_flags {
      name  = "log_min_duration_statement"
      value = "-1"
    }

    database_flags {
      name  = "log_min_error_statement"
      value = "error"
    }

    database_flags {
      name  = "log_statement"
      value = "ddl"
    }

    database_flags {
      name  = "cloudsql.enable_pgaudit"
      value = "on"
    }
  }

  lifecycle {
    prevent_destroy = true
  }
}

resource "google_sql_database" "this" {
  project  = var.project_id
  instance = google_sql_database_instance.this.name
  name     = var.database_name
}

# The app user: serve, publish, sign, project and reap log in as it. The
# migrate Job grants it ledger_writer (SELECT/INSERT on the log, no UPDATE,
# DELETE or TRUNCATE).
resource "random_password" "licensed" {
  length  = 32
  special = false
}

resource "google_sql_user" "licensed" {
  project  = var.project_id
  instance = google_sql_database_instance.this.name
  name     = var.user_name
  password = random_password.licensed.result
}

# The migration user: only the migrate Job logs in as it. The migrations
# create ledger_owner (owns the tables) and ledger_writer.
resource "random_password" "migrate" {
  length  = 32
  special = false
}

resource "google_sql_user" "migrate" {
  project  = var.project_id
  instance = google_sql_database_instance.this.name
  name     = var.migrate_user_name
  password = random_password.migrate.result
}

# Every CA the instance's server certificate may chain to, including one
# that is about to replace the current one during a CA rotation: clients
# trust the whole bundle.
data "google_sql_ca_certs" "this" {
  project  = var.project_id
  instance = google_sql_database_instance.this.name
}

locals {
  # The DNS name in the server certificate (CAS-issued), without the final
  # dot: the host of DATABASE_URL, so that verify-full checks it.
  dns_name = trimsuffix(coalesce(google_sql_database_instance.this.dns_name, "-"), ".")

  url_tail = "@${local.dns_name}:5432/${google_sql_database.this.name}?sslmode=verify-full&sslrootcert=${var.ca_file_path}"
}

# The instance's DNS name resolves to its private IP inside the VPC (GKE
# Autopilot uses Cloud DNS, which answers from this private zone). A zone of
# exactly that name shadows nothing else.
resource "google_dns_managed_zone" "instance" {
  #checkov:skip=CKV_GCP_16:DNSSEC signing applies to public zones only; this zone is private (visible only inside the VPC).
  project     = var.project_id
  name        = "${var.name}-sql"
  dns_name    = "${local.dns_name}."
  description = "Private name of the Cloud SQL instance ${var.name}, for TLS hostname verification (sslmode=verify-full)."
  visibility  = "private"
  labels      = var.labels

  private_visibility_config {
    networks {
      network_url = var.network_id
    }
  }

  lifecycle {
    precondition {
      condition     = local.dns_name != "-"
      error_message = "The Cloud SQL instance reports no DNS name; with server_ca_mode GOOGLE_MANAGED_CAS_CA it should. Check `gcloud sql instances describe` (dnsName, dnsNames)."
    }
  }
}

resource "google_dns_record_set" "instance" {
  project      = var.project_id
  managed_zone = google_dns_managed_zone.instance.name
  name         = google_dns_managed_zone.instance.dns_name
  type         = "A"
  ttl          = 300
  rrdatas      = [google_sql_database_instance.this.private_ip_address]
}
