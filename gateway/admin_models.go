package gateway

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/llmgate/llmgate/config"
	"github.com/llmgate/llmgate/router"
)

// The deploy API: /admin/models[/{alias}[/versions[/{v}]|/traffic|/shadow|/promote|/rollback|
// /history|/rollouts|/rollout[/pause|/resume|/abort]]]. Reads need a read-role token, changes
// an admin-role token whose name is recorded as the actor. Every change answers
// {"revision": N, "model": {...}} with ETag: "<the alias's revision>" and accepts
// If-Match: "<revision>" (412 when the alias changed since).

// modelView is one alias as GET /admin/models shows it.
type modelView struct {
	Alias         string        `json:"alias"`
	Revision      uint64        `json:"revision"`
	Stable        string        `json:"stable"`
	Canary        string        `json:"canary,omitempty"`
	CanaryPercent float64       `json:"canary_percent"`
	Sticky        string        `json:"sticky"`
	Shadow        router.Shadow `json:"shadow"`
	Versions      []versionView `json:"versions"`
	Rollout       *rollout      `json:"rollout"`
}

type versionView struct {
	Name     string        `json:"name"`
	Created  time.Time     `json:"created"`
	Actor    string        `json:"actor"`
	Backends []backendView `json:"backends"`
}

type backendView struct {
	URL      string `json:"url"`
	Kind     string `json:"kind"`
	Model    string `json:"model"`
	Weight   int    `json:"weight"`
	Healthy  bool   `json:"healthy"`
	InFlight int64  `json:"in_flight"`
}

func (g *Gateway) modelView(m *router.ModelState) modelView {
	v := modelView{Alias: m.Alias, Revision: m.Revision, Stable: m.Stable, Canary: m.Canary, CanaryPercent: m.CanaryPercent,
		Sticky: m.Sticky, Shadow: m.Shadow, Versions: []versionView{}, Rollout: g.rollouts.get(m.Alias)}
	if v.Sticky == "" {
		v.Sticky = "none"
	}
	var live *router.Model
	if t := g.Table(); t != nil {
		live = t.Model(m.Alias)
	}
	for _, vs := range m.Versions {
		vv := versionView{Name: vs.Name, Created: vs.Created, Actor: vs.Actor, Backends: []backendView{}}
		var rv *router.Version
		if live != nil {
			for _, x := range live.Versions {
				if x.Name == vs.Name {
					rv = x
				}
			}
		}
		for i, b := range vs.Backends {
			bv := backendView{URL: b.URL, Kind: b.Kind, Model: b.Model, Weight: b.Weight}
			if rv != nil && i < len(rv.Backends) {
				bv.Healthy, bv.InFlight = rv.Backends[i].Healthy(), rv.Backends[i].InFlight()
			}
			vv.Backends = append(vv.Backends, bv)
		}
		v.Versions = append(v.Versions, vv)
	}
	return v
}

var errAdminUnknownModel = &apiError{status: fasthttp.StatusNotFound, typ: typeInvalidRequest, code: "model_not_found", param: "alias",
	message: "No such model; GET /admin/models lists them."}

// serveDeploy answers the deploy API. It reports whether the path was one of its own.
func (g *Gateway) serveDeploy(ctx *fasthttp.RequestCtx, seg []string) bool {
	if len(seg) < 2 || seg[0] != "admin" || seg[1] != "models" {
		return false
	}
	method := string(ctx.Method())
	role := roleRead
	if method != fasthttp.MethodGet {
		role = roleAdmin
	}
	actor, aerr := g.authorize(ctx, role)
	if aerr != nil {
		writeError(ctx, aerr)
		return true
	}
	if len(seg) == 2 {
		if method != fasthttp.MethodGet {
			writeError(ctx, errMethodNotAllowed)
			return true
		}
		s := g.currentState()
		out := struct {
			Revision uint64      `json:"revision"`
			Models   []modelView `json:"models"`
		}{Revision: s.Revision, Models: []modelView{}}
		for i := range s.Models {
			out.Models = append(out.Models, g.modelView(&s.Models[i]))
		}
		encodeJSON(ctx, fasthttp.StatusOK, out)
		return true
	}
	alias := seg[2]
	verb := ""
	if len(seg) > 3 {
		verb = seg[3]
	}
	route := method + " " + verb
	if len(seg) == 5 {
		route += "/"
	}
	if len(seg) > 5 {
		writeError(ctx, errAdminNotFound)
		return true
	}
	c := router.Change{Actor: actor, Time: time.Now().UTC()}
	if m := ctx.Request.Header.Peek("If-Match"); len(m) > 0 {
		rev, ok := parseRevision(m)
		if !ok {
			writeError(ctx, badRequest("If-Match", `If-Match must be a revision such as "12".`))
			return true
		}
		c.IfMatch = rev
	}
	switch route {
	case "GET ":
		m := g.currentState().Model(alias)
		if m == nil {
			writeError(ctx, errAdminUnknownModel)
			return true
		}
		ctx.Response.Header.Set("ETag", etag(m.Revision))
		encodeJSON(ctx, fasthttp.StatusOK, g.modelView(m))
	case "GET history":
		m := g.currentState().Model(alias)
		if m == nil {
			writeError(ctx, errAdminUnknownModel)
			return true
		}
		encodeJSON(ctx, fasthttp.StatusOK, map[string]any{"model": alias, "entries": m.History})
	case "POST versions":
		var spec router.VersionSpec
		if !decodeAdmin(ctx, &spec) {
			return true
		}
		for i := range spec.Backends {
			b := &spec.Backends[i]
			if b.Kind == "" {
				b.Kind = config.DefaultKind
			}
			if b.Weight == 0 {
				b.Weight = config.DefaultWeight
			}
			if err := g.backendPolicy.check(b.URL); err != nil {
				writeError(ctx, badRequest(fmt.Sprintf("backends[%d].url", i), "Backend refused: "+err.Error()))
				return true
			}
		}
		probe := string(ctx.QueryArgs().Peek("probe")) != "false"
		g.writeChange(ctx, alias, c, func(s *router.State, c router.Change) (*router.State, error) {
			return s.Deploy(c, alias, spec)
		}, func(t *router.Table) error {
			if !probe {
				return nil
			}
			return g.probeVersion(t, alias, spec.Name)
		})
	case "DELETE versions/":
		version := seg[4]
		g.writeChange(ctx, alias, c, func(s *router.State, c router.Change) (*router.State, error) {
			return s.DeleteVersion(c, alias, version)
		}, nil)
	case "PUT traffic":
		var t router.Traffic
		if !decodeAdmin(ctx, &t) {
			return true
		}
		g.writeChange(ctx, alias, c, func(s *router.State, c router.Change) (*router.State, error) {
			return s.SetTraffic(c, alias, t)
		}, nil)
	case "PUT shadow":
		var sh router.Shadow
		if !decodeAdmin(ctx, &sh) {
			return true
		}
		g.writeChange(ctx, alias, c, func(s *router.State, c router.Change) (*router.State, error) {
			return s.SetShadow(c, alias, sh)
		}, nil)
	case "POST promote":
		var body struct {
			Reason string `json:"reason"`
		}
		if !decodeAdmin(ctx, &body) {
			return true
		}
		c.Reason = body.Reason
		if next := g.writeChange(ctx, alias, c, func(s *router.State, c router.Change) (*router.State, error) {
			return s.Promote(c, alias)
		}, nil); next != nil {
			g.onPromoted(alias, next.Model(alias).Stable)
		}
	case "POST rollback":
		var body struct {
			To     string `json:"to"`
			Reason string `json:"reason"`
		}
		if !decodeAdmin(ctx, &body) {
			return true
		}
		c.Reason = body.Reason
		g.writeChange(ctx, alias, c, func(s *router.State, c router.Change) (*router.State, error) {
			return s.Rollback(c, alias, body.To)
		}, nil)
	case "POST rollouts":
		g.startRollout(ctx, alias, actor)
	case "GET rollout":
		encodeJSON(ctx, fasthttp.StatusOK, g.rollouts.get(alias))
	case "POST rollout/":
		r, err := g.rollouts.verb(alias, seg[4], actor)
		if err != nil {
			writeError(ctx, &apiError{status: fasthttp.StatusConflict, typ: typeInvalidRequest, code: "rollout_state", message: err.Error()})
			return true
		}
		encodeJSON(ctx, fasthttp.StatusOK, r)
	default:
		writeError(ctx, errAdminNotFound)
	}
	return true
}

// writeChange runs a change and answers it; check, when set, vets the table the change would
// serve before it is committed. It returns the new state, or nil after answering an error.
func (g *Gateway) writeChange(ctx *fasthttp.RequestCtx, alias string, c router.Change, op func(*router.State, router.Change) (*router.State, error), check func(*router.Table) error) *router.State {
	next, err := g.changeChecked(c, op, check)
	if err != nil {
		if m := g.currentState().Model(alias); m != nil && errors.Is(err, router.ErrConflict) {
			ctx.Response.Header.Set("ETag", etag(m.Revision)) // what to re-read and retry with
		}
		writeError(ctx, g.stateError(err))
		return nil
	}
	m := next.Model(alias)
	ctx.Response.Header.Set("ETag", etag(m.Revision))
	encodeJSON(ctx, fasthttp.StatusOK, map[string]any{"revision": next.Revision, "model": g.modelView(m)})
	return next
}

// stateError turns a deploy-state error into the admin API's answer.
func (g *Gateway) stateError(err error) *apiError {
	var fe *router.FieldError
	param := ""
	if errors.As(err, &fe) {
		param = fe.Field
	}
	msg := err.Error()
	switch {
	case errors.Is(err, router.ErrConflict):
		e := &apiError{status: fasthttp.StatusPreconditionFailed, typ: typeInvalidRequest, code: "revision_conflict", param: "If-Match", message: msg}
		return e
	case errors.Is(err, router.ErrInvalid):
		return badRequest(param, msg)
	case errors.Is(err, router.ErrRefused):
		return &apiError{status: fasthttp.StatusConflict, typ: typeInvalidRequest, code: "refused", param: param, message: msg}
	case errors.Is(err, router.ErrUnknownModel):
		return &apiError{status: fasthttp.StatusNotFound, typ: typeInvalidRequest, code: "model_not_found", param: param, message: msg}
	case errors.Is(err, router.ErrUnknownVersion):
		return &apiError{status: fasthttp.StatusNotFound, typ: typeInvalidRequest, code: "version_not_found", param: param, message: msg}
	case errors.Is(err, errProbe):
		return &apiError{status: fasthttp.StatusBadRequest, typ: typeInvalidRequest, code: "backend_unhealthy", param: "backends", message: msg}
	}
	g.log.Error("deploy state change failed", "error", msg)
	return &apiError{status: fasthttp.StatusInternalServerError, typ: typeServer, message: "The change could not be saved: " + msg}
}

var errProbe = errors.New("backend probe failed")

// probeVersion checks every backend of the new version answers its health endpoint.
func (g *Gateway) probeVersion(t *router.Table, alias, version string) error {
	m := t.Model(alias)
	if m == nil {
		return nil
	}
	client := &http.Client{Timeout: g.cfg.Health.Timeout, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	for _, v := range m.Versions {
		if v.Name != version {
			continue
		}
		for _, b := range v.Backends {
			ctx, cancel := context.WithTimeout(context.Background(), g.cfg.Health.Timeout)
			err := router.Probe(ctx, client, b)
			cancel()
			if err != nil {
				return fmt.Errorf("%w: %s: %v (deploy with ?probe=false to skip the check)", errProbe, b.URL, err)
			}
		}
	}
	return nil
}

// startRollout validates a plan and starts it.
func (g *Gateway) startRollout(ctx *fasthttp.RequestCtx, alias, actor string) {
	var r rollout
	if !decodeAdmin(ctx, &r) {
		return
	}
	r.Alias, r.Actor = alias, actor
	if err := r.validate(); err != nil {
		writeError(ctx, err)
		return
	}
	m := g.currentState().Model(alias)
	if m == nil {
		writeError(ctx, errAdminUnknownModel)
		return
	}
	if m.Version(r.Canary) == nil || r.Canary == m.Stable {
		writeError(ctx, badRequest("canary", "The canary must be a deployed version other than the stable one."))
		return
	}
	if err := g.rollouts.start(&r); err != nil {
		if errors.Is(err, errRolloutRunning) {
			writeError(ctx, &apiError{status: fasthttp.StatusConflict, typ: typeInvalidRequest, code: "rollout_running", message: err.Error()})
			return
		}
		writeError(ctx, g.stateError(err))
		return
	}
	encodeJSON(ctx, fasthttp.StatusOK, g.rollouts.get(alias))
}

// decodeAdmin decodes a JSON body strictly into v, answering a 400 naming the field on error.
// An empty body is an empty object.
func decodeAdmin(ctx *fasthttp.RequestCtx, v any) bool {
	body := bytes.TrimSpace(ctx.PostBody())
	if len(body) == 0 {
		body = []byte("{}")
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		param := ""
		var te *json.UnmarshalTypeError
		if errors.As(err, &te) {
			param = te.Field
		} else if s := err.Error(); strings.HasPrefix(s, "json: unknown field ") {
			param = strings.Trim(strings.TrimPrefix(s, "json: unknown field "), `"`)
		}
		writeError(ctx, badRequest(param, "Invalid JSON body: "+err.Error()))
		return false
	}
	return true
}

func etag(rev uint64) string { return `"` + strconv.FormatUint(rev, 10) + `"` }

// parseRevision reads an If-Match value: "12", W/"12" or 12.
func parseRevision(b []byte) (uint64, bool) {
	s := strings.TrimPrefix(strings.TrimSpace(string(b)), "W/")
	s = strings.Trim(s, `"`)
	rev, err := strconv.ParseUint(s, 10, 64)
	return rev, err == nil && rev > 0
}
