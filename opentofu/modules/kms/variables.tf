variable "project_id" {
  description = "Google Cloud project of the key ring."
  type        = string

  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{4,28}[a-z0-9]$", var.project_id))
    error_message = "project_id must be a valid project id (6-30 lowercase letters, digits, hyphens)."
  }
}

variable "location" {
  description = "KMS location of the key ring (a region such as europe-west1, or a multi-region). HSM keys need a location that offers Cloud HSM."
  type        = string

  validation {
    condition     = can(regex("^[a-z0-9-]+$", var.location))
    error_message = "location must be a KMS location name, e.g. europe-west1."
  }
}

variable "key_ring_name" {
  description = "Name of the key ring. Key rings cannot be deleted: choose once."
  type        = string
  default     = "license-ledger"

  validation {
    condition     = can(regex("^[a-zA-Z0-9_-]{1,63}$", var.key_ring_name))
    error_message = "key_ring_name must be 1-63 letters, digits, underscores or hyphens."
  }
}

variable "key_name" {
  description = "Name of the signing key (KMS_KEY_NAME ends with /cryptoKeys/<key_name>)."
  type        = string
  default     = "license-token-signing"

  validation {
    condition     = can(regex("^[a-zA-Z0-9_-]{1,63}$", var.key_name))
    error_message = "key_name must be 1-63 letters, digits, underscores or hyphens."
  }
}

variable "protection_level" {
  description = "Where key versions live: SOFTWARE (development) or HSM (production). Applies to new versions; an existing version keeps its level."
  type        = string
  default     = "HSM"

  validation {
    condition     = contains(["SOFTWARE", "HSM"], var.protection_level)
    error_message = "protection_level must be SOFTWARE or HSM."
  }
}

variable "signer_members" {
  description = "IAM members (serviceAccount:licensed-sign@P.iam.gserviceaccount.com) allowed to sign with the key (roles/cloudkms.signerVerifier), read its public keys and list its versions. Nothing else is granted."
  type        = list(string)

  validation {
    condition     = alltrue([for m in var.signer_members : can(regex("^serviceAccount:[^@]+@[^@]+$", m))])
    error_message = "signer_members must be service accounts, written serviceAccount:EMAIL."
  }
}

variable "public_key_viewer_members" {
  description = "IAM members (serviceAccount:licensed-serve@P.iam.gserviceaccount.com) allowed only to read the key's public keys (roles/cloudkms.publicKeyViewer) and list its versions. They cannot sign."
  type        = list(string)
  default     = []

  validation {
    condition     = alltrue([for m in var.public_key_viewer_members : can(regex("^serviceAccount:[^@]+@[^@]+$", m))])
    error_message = "public_key_viewer_members must be service accounts, written serviceAccount:EMAIL."
  }
}

variable "version_lister_role_id" {
  description = "Role id of the project custom role that lists the key's versions."
  type        = string
  default     = "licenseLedgerKeyVersionLister"

  validation {
    condition     = can(regex("^[a-zA-Z0-9_.]{3,64}$", var.version_lister_role_id))
    error_message = "version_lister_role_id must be 3-64 letters, digits, underscores or dots."
  }
}

variable "labels" {
  description = "Labels on the key."
  type        = map(string)
  default     = {}
}
