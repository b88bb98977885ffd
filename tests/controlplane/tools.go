//go:build tools

// Package tools pins the commands that build.sh compiles, so that
// `go mod tidy` keeps every module they need in go.mod and go.sum.
// Nothing here is built into a program of its own.
package tools

import (
	_ "go.etcd.io/etcd/server/v3"
	_ "k8s.io/kubernetes/cmd/kube-apiserver"
	_ "k8s.io/kubernetes/cmd/kube-controller-manager"
	_ "k8s.io/kubernetes/cmd/kube-scheduler"
	_ "k8s.io/kubernetes/cmd/kubectl"
)
