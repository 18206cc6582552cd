terraform {
  required_version = ">= 1.6.0"

  required_providers {
    # >= 6.28: client.permissions on google_identity_platform_tenant.
    google = {
      source  = "hashicorp/google"
      version = "~> 6.28"
    }
  }
}
