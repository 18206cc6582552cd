terraform {
  required_version = ">= 1.6.0"

  required_providers {
    # >= 6.28: client.permissions on google_identity_platform_tenant.
    google = {
      source  = "hashicorp/google"
      version = "~> 6.28"
    }
    random = {
      source  = "hashicorp/random"
      version = "~> 3.6"
    }
  }

  # Remote state in a GCS bucket (versioned, private, created once by hand:
  # see README.md). The bucket is given at init time:
  #   tofu init -backend-config="bucket=<state bucket>"
  # The state holds the database password and the Redis AUTH string.
  backend "gcs" {
    prefix = "license-ledger/prod"
  }
}

provider "google" {
  project = var.project_id
  region  = var.region
}
