variable "project_id" {
  description = "Google Cloud project of the bucket."
  type        = string

  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{4,28}[a-z0-9]$", var.project_id))
    error_message = "project_id must be a valid project id (6-30 lowercase letters, digits, hyphens)."
  }
}

variable "name" {
  description = "Bucket name (globally unique), e.g. <project>-license-ledger-checkpoints."
  type        = string

  validation {
    condition     = can(regex("^[a-z0-9][a-z0-9_-]{1,61}[a-z0-9]$", var.name)) && !can(regex("^goog", var.name))
    error_message = "name must be 3-63 lowercase letters, digits, hyphens or underscores, not starting with goog."
  }
}

variable "location" {
  description = "Bucket location: the cluster's region (e.g. europe-west1), or a dual/multi-region for more durability."
  type        = string

  validation {
    condition     = can(regex("^[a-zA-Z0-9-]+$", var.location))
    error_message = "location must be a Cloud Storage location name."
  }
}

variable "retention_days" {
  description = "Locked retention period in days. Choose it once: a locked period can be raised, never lowered. 400 days keeps a year of checkpoints plus a month of slack for the yearly audit."
  type        = number
  default     = 400

  validation {
    condition     = var.retention_days >= 1 && var.retention_days <= 36500 && floor(var.retention_days) == var.retention_days
    error_message = "retention_days must be a whole number of days between 1 and 36500."
  }
}

variable "writer_members" {
  description = "Members that write checkpoints (the signer's GSA, serviceAccount:licensed-sign@P.iam.gserviceaccount.com): objectCreator and objectViewer, no delete."
  type        = list(string)

  validation {
    condition     = alltrue([for m in var.writer_members : can(regex("^serviceAccount:[^@]+@[^@]+$", m))])
    error_message = "writer_members must be service accounts, written serviceAccount:EMAIL."
  }
}

variable "auditor_members" {
  description = "Members that read the checkpoints (objectViewer), e.g. group:auditors@example.com."
  type        = list(string)
  default     = []

  validation {
    condition     = alltrue([for m in var.auditor_members : can(regex("^(user|group|serviceAccount|domain):.+$", m))])
    error_message = "auditor_members must be IAM members such as group:auditors@example.com."
  }
}

variable "enable_data_access_logs" {
  description = "Turn on Data Access audit logs (DATA_READ, DATA_WRITE) for Cloud Storage in the project. Authoritative for storage.googleapis.com: set false if the project's audit config is managed elsewhere."
  type        = bool
  default     = true
}

variable "labels" {
  description = "Labels on the bucket."
  type        = map(string)
  default     = {}
}
