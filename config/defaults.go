package config

import "time"

// Defaults for keys left out of the configuration.
const (
	DefaultListen           = ":8080"
	DefaultAdminListen      = "127.0.0.1:8081" // loopback: the admin API must be opened on purpose
	DefaultMaxBodyBytes     = 32 << 20
	DefaultConnectTimeout   = 2 * time.Second
	DefaultFirstByteTimeout = 60 * time.Second // long prompts on a busy GPU take a while to prefill
	DefaultIdleTimeout      = 30 * time.Second
	DefaultTotalTimeout     = 10 * time.Minute
	DefaultHealthInterval   = 5 * time.Second
	DefaultHealthTimeout    = 2 * time.Second
	DefaultFailureThreshold = 3
	DefaultEjectFor         = 10 * time.Second
	DefaultRetryAttempts    = 2
	DefaultDrainDelay       = time.Duration(0) // the listener closes at once
	DefaultShutdownGrace    = 30 * time.Second
	DefaultLogLevel         = "info"
	DefaultWeight           = 1
	DefaultKind             = KindOpenAI
)

// Default returns a Config with every default applied and no models.
func Default() *Config {
	c := &Config{}
	c.ApplyDefaults()
	return c
}

// ApplyDefaults fills in every key that was left out. For a Config from Parse, "left out"
// means absent (or null) in the file, so an explicit zero such as "weight: 0" is kept and
// "total: 0s" is reported by Validate rather than silently replaced. For a Config built in
// code, left out means the zero value. The stable version defaults to the only version when a
// model has exactly one.
func (c *Config) ApplyDefaults() {
	setDefault(c, "listen", &c.Listen, DefaultListen)
	setDefault(c, "admin.listen", &c.Admin.Listen, DefaultAdminListen)
	setDefault(c, "limits.max_body_bytes", &c.Limits.MaxBodyBytes, DefaultMaxBodyBytes)
	setDefault(c, "timeouts.connect", &c.Timeouts.Connect, DefaultConnectTimeout)
	setDefault(c, "timeouts.first_byte", &c.Timeouts.FirstByte, DefaultFirstByteTimeout)
	setDefault(c, "timeouts.idle", &c.Timeouts.Idle, DefaultIdleTimeout)
	setDefault(c, "timeouts.total", &c.Timeouts.Total, DefaultTotalTimeout)
	setDefault(c, "health.interval", &c.Health.Interval, DefaultHealthInterval)
	setDefault(c, "health.timeout", &c.Health.Timeout, DefaultHealthTimeout)
	setDefault(c, "health.failure_threshold", &c.Health.FailureThreshold, DefaultFailureThreshold)
	setDefault(c, "health.eject_for", &c.Health.EjectFor, DefaultEjectFor)
	setDefault(c, "retry.attempts", &c.Retry.Attempts, DefaultRetryAttempts)
	setDefault(c, "shutdown.grace", &c.Shutdown.Grace, DefaultShutdownGrace)
	setDefault(c, "log.level", &c.Log.Level, DefaultLogLevel)
	c.applyObserveDefaults()
	for i := range c.Models {
		m := &c.Models[i]
		mk := indexKey("models", i)
		if len(m.Versions) == 1 {
			setDefault(c, mk+".stable", &m.Stable, m.Versions[0].Version)
		}
		setDefault(c, mk+".guard.safety.holdback_bytes", &m.Guard.Safety.HoldbackBytes, DefaultHoldbackBytes)
		if cl := m.Guard.Safety.Classifier; cl != nil {
			ck := mk + ".guard.safety.classifier"
			setDefault(c, ck+".mode", &cl.Mode, ClassifierSync)
			setDefault(c, ck+".on_error", &cl.OnError, FailOpen)
			setDefault(c, ck+".timeout", &cl.Timeout, DefaultClassifierTimeout)
		}
		for j := range m.Versions {
			vk := indexKey(mk+".versions", j)
			for k := range m.Versions[j].Backends {
				b := &m.Versions[j].Backends[k]
				bk := indexKey(vk+".backends", k)
				setDefault(c, bk+".kind", &b.Kind, DefaultKind)
				setDefault(c, bk+".weight", &b.Weight, DefaultWeight)
			}
		}
	}
}

// setDefault sets *dst to def when key was left out and *dst is zero.
func setDefault[T comparable](c *Config, key string, dst *T, def T) {
	var zero T
	if *dst == zero && !c.src.written(key) {
		*dst = def
	}
}
