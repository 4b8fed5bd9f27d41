// Package terraform holds mtai's AWS deployment: reusable modules under
// modules/ and an example root under examples/production.
//
// The package has no Go code of its own. Its tests check the Terraform
// offline, without providers or credentials: every .tf file parses and is
// canonically formatted, variables and outputs are documented, references
// resolve across modules, and policy checks walk the parsed HCL to assert the
// security properties of the deployment (no internet ingress to the data
// stores, encryption on, a private bucket, tasks in private subnets, no
// wildcard IAM). Run them with `go test ./terraform/...`.
package terraform
