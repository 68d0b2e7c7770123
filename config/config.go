// Package config holds the gateway's configuration as plain data: the types users write in YAML,
// their defaults, a strict parser (unknown keys are errors naming the line) and validation.
// It imports nothing of ours.
package config

import "time"

// Config is the whole gateway configuration. Every section is optional except Models
// (or backends given on the command line).
//
// The usual sequence is Parse (or Load), ApplyDefaults, ApplyEnv, Validate. A Config from Parse
// also remembers where each value came from (an unexported field), so that ApplyDefaults fills
// only keys the file left out and Validate can name the line; compare Configs field by field,
// not with reflect.DeepEqual on the whole value.
type Config struct {
	Listen   string      `yaml:"listen"`
	Admin    Admin       `yaml:"admin"`
	Limits   Limits      `yaml:"limits"`
	Timeouts Timeouts    `yaml:"timeouts"`
	Health   HealthCheck `yaml:"health"`
	Retry    Retry       `yaml:"retry"`
	Log      Log         `yaml:"log"`
	Drift    Drift       `yaml:"drift"`
	Cache    Cache       `yaml:"cache"`
	State    State       `yaml:"state"`
	Shutdown Shutdown    `yaml:"shutdown"`
	Models   []Model     `yaml:"models"`

	src source // where values came from; zero for a Config built in code
}

// Admin configures the admin listener, which also serves /metrics.
type Admin struct {
	Listen string       `yaml:"listen"`
	Tokens []AdminToken `yaml:"tokens"`
	// AllowBackends lists where deploys through the admin API may point backends: CIDR blocks
	// ("10.0.0.0/8") or host names with an optional leading wildcard ("gpu-*.internal").
	// Empty allows any host except link-local and cloud metadata addresses, which are refused
	// whatever this says.
	AllowBackends []string `yaml:"allow_backends"`
	// APIKeyEnvs lists the environment variables, beyond those the models' backends in this
	// file name, that a deploy through the admin API may name as a backend's api_key_env. The
	// gateway sends that variable's value to a URL the admin chose, so any other variable of
	// the process (an admin token, cloud credentials) must not be reachable that way.
	APIKeyEnvs []string `yaml:"api_key_envs"`
}

// State configures where admin changes (deploys, traffic, promotions) are kept.
type State struct {
	Path string `yaml:"path"` // the embedded store's file; created if missing
}

// AdminToken is one bearer token accepted by the admin API. The secret itself is read from the
// environment variable TokenEnv, never written in the file.
type AdminToken struct {
	Name     string `yaml:"name"`
	TokenEnv string `yaml:"token_env"`
	Role     string `yaml:"role"` // admin | read
}

// Limits bounds what clients may send.
type Limits struct {
	MaxBodyBytes int `yaml:"max_body_bytes"`
	// MemoryBytes is a soft limit on the process's memory (Go's GOMEMLIMIT); 0 leaves Go's
	// default, under which the heap may grow to twice what is live: twice a full cache.
	MemoryBytes int64 `yaml:"memory_bytes"`
}

// Timeouts bound each phase of a proxied request.
type Timeouts struct {
	Connect   time.Duration `yaml:"connect"`    // dialing a backend
	FirstByte time.Duration `yaml:"first_byte"` // request sent until a stream's body starts (streams only)
	Idle      time.Duration `yaml:"idle"`       // longest gap between two stream events
	Total     time.Duration `yaml:"total"`      // whole request, streams included
}

// Shutdown says how a stop (SIGTERM or SIGINT) drains the gateway.
type Shutdown struct {
	// DrainDelay is how long the gateway keeps serving, new connections included, with /readyz
	// answering 503 shutting_down, before it closes its listener: a load balancer (Kubernetes
	// endpoints) takes a few seconds to stop sending. 0: the listener closes at once.
	DrainDelay time.Duration `yaml:"drain_delay"`
	// Grace is how long requests in flight, streams included, may then take to finish; streams
	// still running after it end with an error event.
	Grace time.Duration `yaml:"grace"`
}

// HealthCheck configures active probes and passive ejection of backends.
type HealthCheck struct {
	Interval         time.Duration `yaml:"interval"`          // between active probes of one backend
	Timeout          time.Duration `yaml:"timeout"`           // one probe
	FailureThreshold int           `yaml:"failure_threshold"` // consecutive failures before ejection
	EjectFor         time.Duration `yaml:"eject_for"`         // base ejection time, doubled per repeat
}

// Retry configures retries on another backend before the first byte reaches the client.
type Retry struct {
	Attempts int `yaml:"attempts"` // total tries, first included
}

// Log configures the structured request log.
type Log struct {
	Level   string `yaml:"level"`   // debug | info | warn | error
	Prompts bool   `yaml:"prompts"` // not implemented: Validate refuses true
}

// Model is one public model alias and the versions behind it.
type Model struct {
	Alias    string     `yaml:"alias"`
	Stable   string     `yaml:"stable"`
	Versions []Version  `yaml:"versions"`
	Guard    Guard      `yaml:"guard"`
	Cache    ModelCache `yaml:"cache"`
	Drift    ModelDrift `yaml:"drift"`
}

// Version is one deployable version of a model, served by a pool of backends.
type Version struct {
	Version  string    `yaml:"version"`
	Backends []Backend `yaml:"backends"`
}

// Backend kinds.
const (
	KindVLLM   = "vllm"
	KindOllama = "ollama"
	KindOpenAI = "openai"
)

// Backend is one OpenAI-compatible server.
type Backend struct {
	URL       string `yaml:"url"`
	Kind      string `yaml:"kind"`        // vllm | ollama | openai
	Model     string `yaml:"model"`       // the name the backend serves the model under
	APIKeyEnv string `yaml:"api_key_env"` // environment variable holding the backend's API key
	Weight    int    `yaml:"weight"`      // relative share of traffic, default 1; 0 drains it
}
