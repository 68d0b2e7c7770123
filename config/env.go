package config

import (
	"errors"
	"fmt"
	"strconv"
	"time"
)

// envVar is one environment override: the variable, the key path it replaces and where the
// value goes (*string, *int or *time.Duration).
type envVar struct {
	name, key string
	dst       any
}

func (c *Config) envVars() []envVar {
	return []envVar{
		{"LLMGATE_LISTEN", "listen", &c.Listen},
		{"LLMGATE_ADMIN_LISTEN", "admin.listen", &c.Admin.Listen},
		{"LLMGATE_MAX_BODY_BYTES", "limits.max_body_bytes", &c.Limits.MaxBodyBytes},
		{"LLMGATE_TIMEOUT_CONNECT", "timeouts.connect", &c.Timeouts.Connect},
		{"LLMGATE_TIMEOUT_FIRST_BYTE", "timeouts.first_byte", &c.Timeouts.FirstByte},
		{"LLMGATE_TIMEOUT_IDLE", "timeouts.idle", &c.Timeouts.Idle},
		{"LLMGATE_TIMEOUT_TOTAL", "timeouts.total", &c.Timeouts.Total},
		{"LLMGATE_RETRY_ATTEMPTS", "retry.attempts", &c.Retry.Attempts},
		{"LLMGATE_LOG_LEVEL", "log.level", &c.Log.Level},
		{"LLMGATE_STATE_PATH", "state.path", &c.State.Path},
	}
}

// ApplyEnv overrides keys from the environment, read through getenv (os.Getenv in production)
// so tests need not touch the process environment. The variables are LLMGATE_LISTEN,
// LLMGATE_ADMIN_LISTEN, LLMGATE_MAX_BODY_BYTES, LLMGATE_TIMEOUT_CONNECT,
// LLMGATE_TIMEOUT_FIRST_BYTE, LLMGATE_TIMEOUT_IDLE, LLMGATE_TIMEOUT_TOTAL,
// LLMGATE_RETRY_ATTEMPTS, LLMGATE_LOG_LEVEL and LLMGATE_STATE_PATH; empty means unset. A value that does not parse
// is an error naming the variable, and Validate names the variable for values that parse but
// are out of range. It may run before or after ApplyDefaults: a value from the environment
// counts as written, so a default never replaces it.
func (c *Config) ApplyEnv(getenv func(string) string) error {
	var errs []error
	for _, v := range c.envVars() {
		s := getenv(v.name)
		if s == "" {
			continue
		}
		if err := setFromEnv(v.dst, s); err != nil {
			errs = append(errs, &Error{Env: v.name, Key: v.key, Msg: err.Error()})
			continue
		}
		if c.src.env == nil {
			c.src.env = map[string]string{}
		}
		c.src.env[v.key] = v.name
	}
	return errors.Join(errs...)
}

// SetFlag sets key to value from the command-line flag named flag ("--listen"), which wins
// over the file and the environment. Validate then names the flag rather than the file's line,
// which holds another value. key is one the environment can override (envVars).
func (c *Config) SetFlag(key, flag, value string) error {
	for _, v := range c.envVars() {
		if v.key != key {
			continue
		}
		if err := setFromEnv(v.dst, value); err != nil {
			return &Error{Env: flag, Key: key, Msg: err.Error()}
		}
		if c.src.env == nil {
			c.src.env = map[string]string{}
		}
		c.src.env[key] = flag
		return nil
	}
	panic("BUG: no flag for config key " + key)
}

func setFromEnv(dst any, s string) error {
	switch dst := dst.(type) {
	case *string:
		*dst = s
	case *int:
		n, err := strconv.Atoi(s)
		if err != nil {
			return fmt.Errorf("want an integer, got %q", s)
		}
		*dst = n
	case *time.Duration:
		d, err := time.ParseDuration(s)
		if err != nil {
			return errors.New(durationProblem(s))
		}
		*dst = d
	default:
		panic(fmt.Sprintf("BUG: env override into %T", dst))
	}
	return nil
}
