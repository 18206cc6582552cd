variable "project_id" {
  description = "Google Cloud project of the production environment."
  type        = string

  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{4,28}[a-z0-9]$", var.project_id))
    error_message = "project_id must be a valid project id (6-30 lowercase letters, digits, hyphens)."
  }
}

variable "region" {
  description = "Region of every regional resource (cluster, database, Redis, key ring, registry)."
  type        = string
  default     = "europe-west1"

  validation {
    condition     = can(regex("^[a-z]+-[a-z]+[0-9]$", var.region))
    error_message = "region must be a region name such as europe-west1."
  }
}

variable "domain" {
  description = "Public host name of the API (Google-managed certificate, Ingress host, TOKEN_ISSUER)."
  type        = string

  validation {
    condition     = can(regex("^([a-z0-9]([-a-z0-9]*[a-z0-9])?\\.)+[a-z]{2,}$", var.domain))
    error_message = "domain must be a fully qualified lowercase host name."
  }
}

variable "private_services_cidr" {
  description = "Private services access range (Cloud SQL, Memorystore). Must match the ipBlock in deploy/k8s/base/networkpolicy-components.yaml."
  type        = string
  default     = "10.100.0.0/16"

  validation {
    condition     = can(cidrhost(var.private_services_cidr, 0))
    error_message = "private_services_cidr must be an IPv4 CIDR block."
  }
}

variable "master_authorized_networks" {
  description = "CIDR blocks allowed to reach the GKE control plane (operators, CI)."
  type        = list(string)
  default     = []

  validation {
    condition     = alltrue([for c in var.master_authorized_networks : can(cidrhost(c, 0))])
    error_message = "master_authorized_networks must be IPv4 CIDR blocks."
  }
}

variable "k8s_namespace" {
  description = "Namespace of the workloads (deploy/k8s uses license-ledger)."
  type        = string
  default     = "license-ledger"

  validation {
    condition     = can(regex("^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$", var.k8s_namespace))
    error_message = "k8s_namespace must be a DNS-1123 label."
  }
}

variable "kms_protection_level" {
  description = "Protection level of the signing key's versions: HSM in production, SOFTWARE for a cheaper non-production copy."
  type        = string
  default     = "HSM"

  validation {
    condition     = contains(["SOFTWARE", "HSM"], var.kms_protection_level)
    error_message = "kms_protection_level must be SOFTWARE or HSM."
  }
}

variable "db_tier" {
  description = "Cloud SQL machine tier."
  type        = string
  default     = "db-custom-4-16384"

  validation {
    condition     = can(regex("^db-", var.db_tier))
    error_message = "db_tier must be a Cloud SQL tier name (db-...)."
  }
}

variable "redis_memory_size_gb" {
  description = "Memorystore memory in GiB."
  type        = number
  default     = 5

  validation {
    condition     = var.redis_memory_size_gb >= 1 && var.redis_memory_size_gb <= 300
    error_message = "redis_memory_size_gb must be between 1 and 300."
  }
}

variable "checkpoint_retention_days" {
  description = "Locked retention of the checkpoint bucket, in days. Locking is irreversible: it can be raised later, never lowered."
  type        = number
  default     = 400

  validation {
    condition     = var.checkpoint_retention_days >= 1 && var.checkpoint_retention_days <= 36500
    error_message = "checkpoint_retention_days must be between 1 and 36500."
  }
}

variable "auditor_members" {
  description = "IAM members that may read the checkpoint bucket, e.g. [\"group:auditors@example.com\"]."
  type        = list(string)
  default     = []

  validation {
    condition     = alltrue([for m in var.auditor_members : can(regex("^(user|group|serviceAccount|domain):.+$", m))])
    error_message = "auditor_members must be IAM members such as group:auditors@example.com."
  }
}

variable "authorized_domains" {
  description = "Domains allowed to run the Identity Platform sign-in flow."
  type        = list(string)
  default     = []

  validation {
    condition     = alltrue([for d in var.authorized_domains : can(regex("^[a-z0-9.-]+$", d))])
    error_message = "authorized_domains must be plain host names."
  }
}

variable "multi_tenant" {
  description = "Enable Identity Platform multi-tenancy (tenant from firebase.tenant)."
  type        = bool
  default     = true
}

variable "tenants" {
  description = "Identity Platform tenants to create (key => display name); only with multi_tenant."
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
  description = "OAuth client secret for Google sign-in (pass with TF_VAR_google_client_secret, never in a file in git)."
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
  description = "Client secret of the GitHub OAuth app (pass with TF_VAR_github_client_secret)."
  type        = string
  sensitive   = true

  validation {
    condition     = length(var.github_client_secret) > 0
    error_message = "github_client_secret must not be empty."
  }
}
