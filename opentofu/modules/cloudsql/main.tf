# Cloud SQL for PostgreSQL 15: the event log, the source of truth. Private IP
# only, TLS required, automated backups with point-in-time recovery, and
# idle_in_transaction_session_timeout so a stuck transaction cannot stall
# log tailing for long (ARCHITECTURE.md, invariant 4).

resource "google_sql_database_instance" "this" {
  #checkov:skip=CKV_GCP_6:ssl_mode ENCRYPTED_ONLY rejects every unencrypted connection; client certificates (the only mode this check accepts) would need per-pod certificate distribution, and the instance has a private IP only with password authentication.
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
