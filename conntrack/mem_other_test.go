//go:build !linux

package conntrack

const mapSupported = false
