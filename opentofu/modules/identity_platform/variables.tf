variable "project_id" {
  description = "Google Cloud project that hosts Identity Platform (its id is the token audience)."
  type        = string

  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{4,28}[a-z0-9]$", var.project_id))
    error_message = "project_id must be a valid project id (6-30 lowercase letters, digits, hyphens)."
  }
}

variable "authorized_domains" {
  description = "Domains allowed to run the sign-in flow (the web front end)."
  type        = list(string)
  default     = []

  validation {
    condition     = alltrue([for d in var.authorized_domains : can(regex("^[a-z0-9.-]+$", d))])
    error_message = "authorized_domains must be plain host names, without scheme or path."
  }
}

variable "multi_tenant" {
  description = "Enable Identity Platform multi-tenancy. Tokens of tenant users then carry firebase.tenant, which License Ledger uses as the tenant."
  type        = bool
  default     = false
}

variable "tenants" {
  description = "Tenants to create when multi_tenant is true: map of a stable key to the tenant display name (4-20 characters, letters, digits, hyphens, starting with a letter)."
  type        = map(string)
  default     = {}

  validation {
    condition     = alltrue([for n in values(var.tenants) : can(regex("^[A-Za-z][A-Za-z0-9-]{3,19}$", n))])
    error_message = "Tenant display names must be 4-20 letters, digits or hyphens, starting with a letter."
  }
}

variable "google_client_id" {
  description = "OAuth client id for Google sign-in."
  type        = string

  validation {
    condition     = length(var.google_client_id) > 0
    error_message = "google_client_id must not be empty."
  }
}

variable "google_client_secret" {
  description = "OAuth client secret for Google sign-in."
  type        = string
  sensitive   = true

  validation {
    condition     = length(var.google_client_secret) > 0
    error_message = "google_client_secret must not be empty."
  }
}

variable "github_client_id" {
  description = "Client id of the GitHub OAuth app."
  type        = string

  validation {
    condition     = length(var.github_client_id) > 0
    error_message = "github_client_id must not be empty."
  }
}

variable "github_client_secret" {
  description = "Client secret of the GitHub OAuth app."
  type        = string
  sensitive   = true

  validation {
    condition     = length(var.github_client_secret) > 0
    error_message = "github_client_secret must not be empty."
  }
}
