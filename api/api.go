// Package api holds the wire types of the RootlessKit-compatible REST API that
// unroot serves on STATE/api.sock. Field names, order and omitempty rules match
// RootlessKit's pkg/api so that dockerd, nerdctl, k3s and rootlessctl decode
// them unchanged. It imports nothing else from unroot.
package api

// Version is the REST API version RootlessKit v3.3.0 reports (1.1.3: the
// network driver's ipv6 and the port driver's extra fields).
const Version = "1.1.3"

// Info is the body of GET /v1/info.
type Info struct {
	APIVersion    string             `json:"apiVersion"`
	Version       string             `json:"version"`
	StateDir      string             `json:"stateDir"`
	ChildPID      int                `json:"childPID"`
	NetworkDriver *NetworkDriverInfo `json:"networkDriver,omitempty"`
	PortDriver    *PortDriverInfo    `json:"portDriver,omitempty"`
	// Bypass is unroot's own (RootlessKit has no such field): present when
	// --bypass was asked for.
	Bypass *BypassInfo `json:"bypass,omitempty"`
	// Health is unroot's own: the state of what keeps the namespace
	// connected. Absent for the host network.
	Health *HealthInfo `json:"health,omitempty"`
}

// HealthInfo is the health block of GET /v1/info (unroot only).
type HealthInfo struct {
	Network *NetworkHealth `json:"network,omitempty"`
}

// Network health states.
const (
	// HealthUp: the network driver works (its helper may have been
	// restarted: see Restarts).
	HealthUp = "up"
	// HealthDegraded: its helper died and is being restarted; outbound
	// network and published ports are down meanwhile.
	HealthDegraded = "degraded"
	// HealthDown: its helper died and restarts stopped; the namespace has
	// no network (--on-network-failure=keep runs on like this).
	HealthDown = "down"
)

// NetworkHealth is the network driver's state.
type NetworkHealth struct {
	Driver string `json:"driver"`
	State  string `json:"state"`
	// Restarts counts the helper's restarts since start.
	Restarts int `json:"restarts"`
	// LastError is the last loss or failed restart, "" if none.
	LastError string `json:"lastError,omitempty"`
}

// BypassInfo reports --bypass: whether the namespace's sockets are handed
// to the host kernel.
type BypassInfo struct {
	Mode    string `json:"mode"`
	Enabled bool   `json:"enabled"`
	// Reason says why it is off under mode auto.
	Reason string `json:"reason,omitempty"`
}

// NetworkDriverInfo describes the network driver. It is omitted for --net=host.
type NetworkDriverInfo struct {
	Driver         string   `json:"driver"`
	DNS            []string `json:"dns,omitempty"`
	ChildIP        string   `json:"childIP,omitempty"`
	DynamicChildIP bool     `json:"dynamicChildIP,omitempty"`
	// IPv6 says the namespace has IPv6 routing (API 1.1.2).
	IPv6 bool `json:"ipv6,omitempty"`
}

// PortDriverInfo describes the port driver. It is omitted for port drivers
// none and implicit.
type PortDriverInfo struct {
	Driver                  string   `json:"driver"`
	Protos                  []string `json:"protos"`
	DisallowLoopbackChildIP bool     `json:"disallowLoopbackChildIP,omitempty"`
	// Extra holds driver-specific details (API 1.1.3), e.g.
	// {"sourceIPTransparentBackend":"iptables"} for the builtin driver.
	Extra map[string]string `json:"extra,omitempty"`
}

// ErrorJSON is the body of every error response.
type ErrorJSON struct {
	Message string `json:"message"`
}
