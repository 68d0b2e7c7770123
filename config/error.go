package config

import (
	"errors"
	"slices"
	"strconv"
	"strings"
)

// Error is one problem in a configuration, located as precisely as is known. Parse, Load,
// ApplyEnv and Validate return *Error values, joined with errors.Join when there are several.
type Error struct {
	File string // path given to Load; empty for Parse and for Configs built in code
	Line int    // 1-based line in the file; 0 when unknown
	Env  string // environment variable (or command-line flag) the value came from, if one did
	Key  string // key path, e.g. models[0].versions[1].backends[0].url; for an unknown key, its parent
	Msg  string
}

// Error formats e as "config: FILE:LINE: KEY: MSG", leaving out what is unknown.
func (e *Error) Error() string {
	var b strings.Builder
	b.WriteString("config: ")
	switch {
	case e.Env != "":
		b.WriteString(e.Env)
		b.WriteString(": ")
	case e.File != "":
		b.WriteString(e.File)
		if e.Line > 0 {
			b.WriteByte(':')
			b.WriteString(strconv.Itoa(e.Line))
		}
		b.WriteString(": ")
	case e.Line > 0:
		b.WriteString("line ")
		b.WriteString(strconv.Itoa(e.Line))
		b.WriteString(": ")
	}
	if e.Key != "" {
		b.WriteString(e.Key)
		b.WriteString(": ")
	}
	b.WriteString(e.Msg)
	return b.String()
}

// JoinInLineOrder joins errs (nil ones left out, joined ones taken apart) with errors.Join, the
// errors located at a line of the file in line order, then the rest (from an environment
// variable or flag, or of no known place) in the order given: a user fixes the file from the
// top, and the parse errors, Validate's and the caller's own checks each came in their own
// order, one block after another.
func JoinInLineOrder(errs ...error) error {
	var flat []error
	var add func(error)
	add = func(err error) {
		if j, ok := err.(interface{ Unwrap() []error }); ok {
			for _, e := range j.Unwrap() {
				add(e)
			}
			return
		}
		if err != nil {
			flat = append(flat, err)
		}
	}
	for _, err := range errs {
		add(err)
	}
	slices.SortStableFunc(flat, func(a, b error) int {
		la, lb := errorLine(a), errorLine(b)
		switch {
		case la == lb:
			return 0
		case la == 0:
			return 1
		case lb == 0:
			return -1
		}
		return la - lb
	})
	return errors.Join(flat...)
}

// errorLine is the line of the file err is located at; 0 when none.
func errorLine(err error) int {
	if e, ok := errors.AsType[*Error](err); ok && e.Env == "" {
		return e.Line
	}
	return 0
}

// source records where a Config's values came from, by key path. Validate uses it to name the
// line, ApplyDefaults to tell "left out" from "explicitly zero" (weight: 0 drains a backend).
type source struct {
	file  string
	lines map[string]int    // line of every key written with a non-null value, and of list entries
	env   map[string]string // keys set by ApplyEnv or SetFlag, to the variable or flag that set them
	// misspelt holds the keys an unknown key of the file likely meant ("versons": versions).
	// Validate says nothing of them: "versions: at least one is required" would only repeat
	// the parse error that comes with it.
	misspelt map[string]bool
	// unreadable holds the keys whose values the file has but parse could not read (a value
	// of the wrong type, a bad duration): left out, and said once, by parse.
	unreadable map[string]bool
}

// written reports whether key was given a value by the file or the environment.
func (s *source) written(key string) bool {
	if _, ok := s.lines[key]; ok {
		return true
	}
	_, ok := s.env[key]
	return ok
}

// errorAt returns an Error for key located by the environment variable that set it, else by
// its own line, else by the line of its nearest written parent (a missing key has no line of
// its own, but the map that lacks it does).
func (s *source) errorAt(key, msg string) *Error {
	e := &Error{File: s.file, Key: key, Msg: msg}
	if v, ok := s.env[key]; ok {
		e.Env = v
		return e
	}
	for k := key; k != ""; k = parentKey(k) {
		if line, ok := s.lines[k]; ok {
			e.Line = line
			break
		}
	}
	return e
}

// ErrorAt returns an Error about key, located as Validate locates its own: by the file's line,
// or the environment variable or flag that set it. For checks made outside this package, such
// as whether a variable the config names is set.
func (c *Config) ErrorAt(key, msg string) *Error {
	return c.src.errorAt(key, msg)
}

// parentKey strips the last ".name" or "[i]" from a key path.
func parentKey(key string) string {
	i := strings.LastIndexAny(key, ".[")
	if i < 0 {
		return ""
	}
	return key[:i]
}

// childKey joins a map key onto a key path.
func childKey(parent, name string) string {
	if parent == "" {
		return name
	}
	return parent + "." + name
}

// indexKey joins a list index onto a key path.
func indexKey(parent string, i int) string {
	return parent + "[" + strconv.Itoa(i) + "]"
}

// underUnreadable reports whether key is a key parse could not read, or lies under one: its
// error is said already, and the default that took its place is no problem of the file's.
func (s *source) underUnreadable(key string) bool {
	for k := key; k != ""; {
		if s.unreadable[k] {
			return true
		}
		i := strings.LastIndexAny(k, ".[")
		if i < 0 {
			return false
		}
		k = k[:i]
	}
	return false
}
