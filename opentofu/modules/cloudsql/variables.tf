variable "project_id" {
  description = "Google Cloud project of the instance."
  type        = string

  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{4,28}[a-z0-9]$", var.project_id))
    error_message = "project_id must be a valid project id (6-30 lowercase letters, digits, hyphens)."
  }
}

variable "region" {
  description = "Region of the instance (the cluster's region)."
  type        = string

  validation {
    condition     = can(regex("^[a-z]+-[a-z]+[0-9]$", var.region))
    error_message = "region must be a region name such as europe-west1."
  }
}

variable "name" {
  description = "Instance name. A deleted instance's name cannot be reused for a week."
  type        = string
  default     = "license-ledger"

  validation {
    condition     = can(regex("^[a-z]([-a-z0-9]{0,78}[a-z0-9])?$", var.name))
    error_message = "name must be lowercase letters, digits and hyphens, starting with a letter."
  }
}

variable "network_id" {
  description = "VPC id with private services access (network module output network_id). The instance gets a private IP only."
  type        = string

  validation {
    condition     = can(regex("^projects/[^/]+/global/networks/[^/]+$", var.network_id))
    error_message = "network_id must be projects/P/global/networks/N."
  }
}

variable "tier" {
  description = "Machine tier, e.g. db-custom-4-16384 (4 vCPU, 16 GiB)."
  type        = string
  default     = "db-custom-4-16384"

  validation {
    condition     = can(regex("^db-", var.tier))
    error_message = "tier must be a Cloud SQL tier name (db-...)."
  }
}

variable "availability_type" {
  description = "REGIONAL (synchronous standby in another zone, production) or ZONAL."
  type        = string
  default     = "REGIONAL"

  validation {
    condition     = contains(["REGIONAL", "ZONAL"], var.availability_type)
    error_message = "availability_type must be REGIONAL or ZONAL."
  }
}

variable "disk_size_gb" {
  description = "Initial SSD size in GB (grows automatically)."
  type        = number
  default     = 100

  validation {
    condition     = var.disk_size_gb >= 10
    error_message = "disk_size_gb must be at least 10."
  }
}

variable "backup_start_time" {
  description = "Daily backup window start, HH:MM UTC."
  type        = string
  default     = "02:00"

  validation {
    condition     = can(regex("^([01][0-9]|2[0-3]):[0-5][0-9]$", var.backup_start_time))
    error_message = "backup_start_time must be HH:MM."
  }
}

variable "transaction_log_retention_days" {
  description = "Days of write-ahead log kept for point-in-time recovery (1-7)."
  type        = number
  default     = 7

  validation {
    condition     = var.transaction_log_retention_days >= 1 && var.transaction_log_retention_days <= 7
    error_message = "transaction_log_retention_days must be between 1 and 7."
  }
}

variable "retained_backups" {
  description = "Number of daily backups kept."
  type        = number
  default     = 30

  validation {
    condition     = var.retained_backups >= 7 && var.retained_backups <= 365
    error_message = "retained_backups must be between 7 and 365."
  }
}

variable "idle_in_transaction_session_timeout_ms" {
  description = "idle_in_transaction_session_timeout in milliseconds: a transaction left open and idle this long is ended, so it cannot hold back log tailing."
  type        = number
  default     = 30000

  validation {
    condition     = var.idle_in_transaction_session_timeout_ms >= 1000 && var.idle_in_transaction_session_timeout_ms <= 600000
    error_message = "idle_in_transaction_session_timeout_ms must be between 1000 and 600000."
  }
}

variable "max_connections" {
  description = "Postgres max_connections. Budget: sum over pods of DB_MAX_CONNECTIONS (default 16) plus headroom for rollouts and operators."
  type        = number
  default     = 500

  validation {
    condition     = var.max_connections >= 50 && var.max_connections <= 5000
    error_message = "max_connections must be between 50 and 5000."
  }
}

variable "database_name" {
  description = "Database that holds the event log."
  type        = string
  default     = "license_ledger"

  validation {
    condition     = can(regex("^[a-z_][a-z0-9_]{0,62}$", var.database_name))
    error_message = "database_name must be a lowercase Postgres identifier."
  }
}

variable "user_name" {
  description = "Login role of the service's workloads (the app user). The migrate Job grants it ledger_writer; it owns nothing."
  type        = string
  default     = "licensed"

  validation {
    condition     = can(regex("^[a-z_][a-z0-9_]{0,62}$", var.user_name))
    error_message = "user_name must be a lowercase Postgres identifier."
  }
}

variable "migrate_user_name" {
  description = "Login role of the migrate Job (the migration user)."
  type        = string
  default     = "licensed_migrate"

  validation {
    condition     = can(regex("^[a-z_][a-z0-9_]{0,62}$", var.migrate_user_name))
    error_message = "migrate_user_name must be a lowercase Postgres identifier."
  }
}

variable "ca_file_path" {
  description = "Path of the server CA bundle inside the pods (sslrootcert in the URLs): the Secret licensed-tls is mounted at /etc/licensed/tls."
  type        = string
  default     = "/etc/licensed/tls/postgres-ca.pem"

  validation {
    condition     = can(regex("^/[A-Za-z0-9._/-]+$", var.ca_file_path))
    error_message = "ca_file_path must be an absolute path without spaces or URL-special characters."
  }
}

variable "labels" {
  description = "User labels on the instance."
  type        = map(string)
  default     = {}
}
