variable "project_id" {
  description = "Google Cloud project of the cluster (its Workload Identity pool is PROJECT.svc.id.goog)."
  type        = string

  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{4,28}[a-z0-9]$", var.project_id))
    error_message = "project_id must be a valid project id (6-30 lowercase letters, digits, hyphens)."
  }
}

variable "region" {
  description = "Region of the (regional) Autopilot cluster."
  type        = string

  validation {
    condition     = can(regex("^[a-z]+-[a-z]+[0-9]$", var.region))
    error_message = "region must be a region name such as europe-west1."
  }
}

variable "name" {
  description = "Cluster name."
  type        = string
  default     = "license-ledger"

  validation {
    condition     = can(regex("^[a-z]([-a-z0-9]{0,38}[a-z0-9])?$", var.name))
    error_message = "name must be a lowercase RFC 1035 name of at most 40 characters."
  }
}

variable "network_name" {
  description = "VPC name (network module output network_name)."
  type        = string
}

variable "subnetwork_name" {
  description = "Subnet name (network module output subnetwork_name)."
  type        = string
}

variable "pods_range_name" {
  description = "Secondary range name for pods."
  type        = string
  default     = "pods"
}

variable "services_range_name" {
  description = "Secondary range name for Services."
  type        = string
  default     = "services"
}

variable "master_ipv4_cidr_block" {
  description = "A /28 for the control plane's private endpoint."
  type        = string
  default     = "172.16.0.0/28"

  validation {
    condition     = can(cidrhost(var.master_ipv4_cidr_block, 0)) && endswith(var.master_ipv4_cidr_block, "/28")
    error_message = "master_ipv4_cidr_block must be an IPv4 /28."
  }
}

variable "enable_private_endpoint" {
  description = "Serve the control plane on its private address only (then kubectl must run inside the VPC or through a bastion)."
  type        = bool
  default     = false
}

variable "master_authorized_networks" {
  description = "CIDR blocks allowed to reach the control plane (operators, CI). Empty allows only Google-internal and VPC addresses."
  type        = list(string)
  default     = []

  validation {
    condition     = alltrue([for c in var.master_authorized_networks : can(cidrhost(c, 0))])
    error_message = "master_authorized_networks must be IPv4 CIDR blocks."
  }
}

variable "release_channel" {
  description = "GKE release channel."
  type        = string
  default     = "REGULAR"

  validation {
    condition     = contains(["RAPID", "REGULAR", "STABLE"], var.release_channel)
    error_message = "release_channel must be RAPID, REGULAR or STABLE."
  }
}

variable "deletion_protection" {
  description = "Refuse `tofu destroy` of the cluster."
  type        = bool
  default     = true
}

variable "workload_identities" {
  description = "Kubernetes service account name (in k8s_namespace) => full resource name of the Google service account it acts as (iam module output names). deploy/k8s/base/serviceaccount.yaml has one KSA licensed-<workload> per workload."
  type        = map(string)

  validation {
    condition     = alltrue([for gsa in values(var.workload_identities) : can(regex("^projects/[^/]+/serviceAccounts/[^/]+$", gsa))])
    error_message = "workload_identities values must be projects/P/serviceAccounts/EMAIL."
  }

  validation {
    condition     = alltrue([for ksa in keys(var.workload_identities) : can(regex("^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$", ksa))])
    error_message = "workload_identities keys must be DNS-1123 subdomains (Kubernetes service account names)."
  }
}

variable "k8s_namespace" {
  description = "Namespace of the License Ledger workloads (deploy/k8s)."
  type        = string
  default     = "license-ledger"

  validation {
    condition     = can(regex("^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$", var.k8s_namespace))
    error_message = "k8s_namespace must be a DNS-1123 label."
  }
}

variable "labels" {
  description = "Resource labels on the cluster."
  type        = map(string)
  default     = {}
}
