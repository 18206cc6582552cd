variable "project_id" {
  description = "Google Cloud project of the service accounts."
  type        = string

  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{4,28}[a-z0-9]$", var.project_id))
    error_message = "project_id must be a valid project id (6-30 lowercase letters, digits, hyphens)."
  }
}

variable "account_id_prefix" {
  description = "Prefix of the account ids: each GSA is <prefix>-<workload>@PROJECT.iam.gserviceaccount.com."
  type        = string
  default     = "licensed"

  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{2,14}$", var.account_id_prefix))
    error_message = "account_id_prefix must be 3-15 lowercase letters, digits or hyphens, starting with a letter."
  }
}

variable "workloads" {
  description = "The workloads (licensed subcommands) that get a GSA. deploy/k8s has one KSA licensed-<workload> for each."
  type        = list(string)
  default     = ["serve", "publish", "sign", "project", "reap", "migrate"]

  validation {
    condition     = alltrue([for w in var.workloads : can(regex("^[a-z][a-z0-9]{1,13}[a-z0-9]$", w))])
    error_message = "workloads must be short lowercase names (3-15 letters or digits)."
  }
}
