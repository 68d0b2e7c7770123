package gateway

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/llmgate/llmgate/config"
	"github.com/llmgate/llmgate/router"
)

// The deploy API: /admin/models[/{alias}[/versions[/{v}]|/traffic|/shadow|/promote|/rollback|
// /history|/rollouts|/rollout[/pause|/resume|/abort]]]; DELETE /admin/models/{alias} removes an
// alias. Reads need a read-role token, changes an admin-role token whose name is recorded as the
// actor. Every change answers {"revision": N, "model": {...}} with ETag: "<the alias's
// revision>" and accepts If-Match: "<revision>" (412 when the alias changed since) or If-Match: *
// (412 when the alias does not exist, for a write that would otherwise create it); deleting an
// alias answers {"revision": N, "deleted": {"alias", "versions"}}.

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
	Name     string        `json:"version"` // as in the config and POST .../versions
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

// modelView shows m with its rollout ro (nil when it has none).
func (g *Gateway) modelView(m *router.ModelState, ro *rollout) modelView {
	v := modelView{Alias: m.Alias, Revision: m.Revision, Stable: m.Stable, Canary: m.Canary, CanaryPercent: m.CanaryPercent,
		Sticky: m.Sticky, Shadow: m.Shadow, Versions: []versionView{}, Rollout: ro}
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

// versionBody is the body of POST /admin/models/{alias}/versions: one entry of versions in the
// config file, as JSON. A weight left out is config.DefaultWeight and an explicit 0 drains the
// backend, as in the file, so Weight is a pointer. Created and actor are the gateway's to set.
type versionBody struct {
	Version  string `json:"version"`
	Backends []struct {
		URL       string `json:"url"`
		Kind      string `json:"kind"`
		Model     string `json:"model"`
		APIKeyEnv string `json:"api_key_env"`
		Weight    *int   `json:"weight"`
	} `json:"backends"`
}

// deployRoutes are the URLs below /admin/models/{alias}, by their verb ("/" added when a
// version or a rollout action follows), with the methods each takes.
var deployRoutes = map[string]string{
	"": "GET, DELETE", "history": "GET",
	"versions": "POST", "versions/": "DELETE",
	"traffic": "PUT", "shadow": "PUT", "promote": "POST", "rollback": "POST",
	"rollouts": "POST", "rollout": "GET", "rollout/": "POST",
}

// rolloutVerbs are the actions of POST /admin/models/{alias}/rollout/{verb}.
var rolloutVerbs = []string{"pause", "resume", "abort"}

var errAdminUnknownModel = &apiError{status: fasthttp.StatusNotFound, typ: typeInvalidRequest, code: "model_not_found", param: "alias",
	message: "No such model; GET /admin/models lists them."}

// serveDeploy answers the deploy API. It reports whether the path was one of its own.
func (g *Gateway) serveDeploy(ctx *fasthttp.RequestCtx, seg []string) bool {
	if len(seg) < 2 || seg[0] != "admin" || seg[1] != "models" {
		return false
	}
	method := string(ctx.Method())
	// Methods that write need the admin role. Any other (HEAD, OPTIONS) is a read token's to
	// try, and gets the 405 saying what the URL takes, not a 403 that blames the token's role.
	role := roleRead
	switch method {
	case fasthttp.MethodPost, fasthttp.MethodPut, fasthttp.MethodDelete, fasthttp.MethodPatch:
		role = roleAdmin
	}
	actor, aerr := g.authorize(ctx, role)
	if aerr != nil {
		writeError(ctx, aerr)
		return true
	}
	if len(seg) == 2 {
		if method != fasthttp.MethodGet {
			methodNotAllowed(ctx, "GET")
			return true
		}
		s, ros := g.viewState()
		out := struct {
			Revision uint64      `json:"revision"`
			Models   []modelView `json:"models"`
		}{Revision: s.Revision, Models: []modelView{}}
		for i := range s.Models {
			out.Models = append(out.Models, g.modelView(&s.Models[i], ros[s.Models[i].Alias]))
		}
		encodeJSON(ctx, fasthttp.StatusOK, out)
		return true
	}
	alias := seg[2]
	verb := ""
	if len(seg) > 3 {
		verb = seg[3]
	}
	shape := verb
	if len(seg) == 5 {
		shape += "/"
	}
	// An unknown URL is a 404 and a known one asked with the wrong method a 405, before the
	// body or the query is looked at.
	allow, known := deployRoutes[shape]
	if !known || len(seg) > 5 || shape == "rollout/" && !slices.Contains(rolloutVerbs, seg[4]) {
		writeError(ctx, errAdminNotFound)
		return true
	}
	if !slices.Contains(strings.Split(allow, ", "), method) {
		methodNotAllowed(ctx, allow)
		return true
	}
	route := method + " " + shape
	c := router.Change{Actor: actor, Time: time.Now().UTC()}
	if m := ctx.Request.Header.Peek("If-Match"); len(m) > 0 {
		tag, weak := bytes.CutPrefix(bytes.TrimSpace(m), []byte("W/"))
		rev, ok := parseRevision(tag)
		if !ok || weak && rev == ifMatchAny {
			writeError(ctx, badRequest("If-Match", `If-Match must be a revision such as "12", or *.`))
			return true
		}
		if cur := g.currentState().Model(alias); weak && cur != nil {
			// If-Match compares strongly (RFC 9110 13.1.1): a weak tag matches no revision.
			// (Where the alias does not exist, the write answers as with a stale revision.)
			ctx.Response.Header.Set("ETag", etag(cur.Revision))
			writeError(ctx, &apiError{status: fasthttp.StatusPreconditionFailed, typ: typeInvalidRequest, code: "revision_conflict", param: "If-Match",
				message: "If-Match " + string(m) + ` is a weak entity tag, which never matches: If-Match compares strongly (RFC 9110); send the revision as "12".`})
			return true
		}
		c.IfMatch = rev
	}
	var allowed []string
	switch route {
	case "POST versions":
		allowed = []string{"probe"}
	case "POST promote", "PUT traffic":
		allowed = []string{"force"}
	}
	if !onlyQueryArgs(ctx, allowed...) {
		return true
	}
	// Checked here, not where it matters (refuseUnserved): a traffic change that keeps the
	// stable version took ?force=yes without a word.
	if f := string(ctx.QueryArgs().Peek("force")); ctx.QueryArgs().Has("force") && f != "true" && f != "false" {
		writeError(ctx, badRequest("force", "?force= is true or false (the default)."))
		return true
	}
	switch route {
	case "GET ":
		s, ros := g.viewState()
		m := s.Model(alias)
		if m == nil {
			writeError(ctx, errAdminUnknownModel)
			return true
		}
		ctx.Response.Header.Set("ETag", etag(m.Revision))
		encodeJSON(ctx, fasthttp.StatusOK, g.modelView(m, ros[alias]))
	case "GET history":
		m := g.currentState().Model(alias)
		if m == nil {
			writeError(ctx, errAdminUnknownModel)
			return true
		}
		ctx.Response.Header.Set("ETag", etag(m.Revision))
		encodeJSON(ctx, fasthttp.StatusOK, map[string]any{"model": alias, "entries": m.History})
	case "POST versions":
		var body versionBody
		if !decodeAdmin(ctx, &body) {
			return true
		}
		spec := router.VersionSpec{Name: body.Version, Backends: make([]router.BackendSpec, len(body.Backends))}
		for i, in := range body.Backends {
			b := &spec.Backends[i]
			*b = router.BackendSpec{URL: in.URL, Kind: in.Kind, Model: in.Model, APIKeyEnv: in.APIKeyEnv, Weight: config.DefaultWeight}
			if b.Kind == "" {
				b.Kind = config.DefaultKind
			}
			if in.Weight != nil {
				b.Weight = *in.Weight // 0 drains the backend, as in the config file
			}
			if b.APIKeyEnv != "" && !g.adminKeyEnvs[b.APIKeyEnv] {
				writeError(ctx, badRequest(fmt.Sprintf("backends[%d].api_key_env", i), "Environment variable "+b.APIKeyEnv+
					" may not be sent to a backend: name one that a backend in the config file uses, or list it in admin.api_key_envs."))
				return true
			}
			if err := g.backendPolicy.check(b.URL); err != nil {
				writeError(ctx, badRequest(fmt.Sprintf("backends[%d].url", i), "Backend refused: "+err.Error()))
				return true
			}
		}
		deploy := func(s *router.State, c router.Change) (*router.State, error) {
			return s.Deploy(c, alias, spec)
		}
		switch p := string(ctx.QueryArgs().Peek("probe")); {
		case ctx.QueryArgs().Has("probe") && p != "true" && p != "false":
			writeError(ctx, badRequest("probe", "?probe= is true (the default) or false."))
			return true
		case p != "false":
			// Probe before the change takes the deploy lock: a silent backend holds a probe for
			// health.timeout, and under the lock it would stall every other change, every
			// read of the state and the rollouts' steps meanwhile. The change is tried on the
			// current state first, so a deploy the state refuses is answered without probing.
			if err := g.probeDeploy(c, deploy, alias, spec.Name); err != nil {
				g.answerChange(ctx, alias, nil, err)
				return true
			}
		}
		g.writeChange(ctx, alias, c, deploy)
	case "DELETE ":
		g.deleteModel(ctx, alias, c)
	case "DELETE versions/":
		version := seg[4]
		next, err := g.changeThen(c, matchAny(alias, func(s *router.State, c router.Change) (*router.State, error) {
			if m := s.Model(alias); m != nil && finishedOf(m.Rollout, version) {
				c.Rollout = new(json.RawMessage) // a rollout of a version that is gone: cleared with it
			}
			return s.DeleteVersion(c, alias, version)
		}), func() {
			// Its answers can never be served again, and a version deployed later under the
			// same name must inherit neither them nor its statistics.
			g.forgetVersion(alias, version)
		})
		if err == nil {
			g.rollouts.forgetFinished(alias, version)
		}
		g.answerChange(ctx, alias, next, err)
	case "PUT traffic":
		var t router.Traffic
		if !decodeAdmin(ctx, &t) {
			return true
		}
		if m := g.Table().Model(alias); m != nil && m.Stable != nil && t.Stable != "" && t.Stable != m.Stable.Name {
			if refuseUnserved(ctx, m, t.Stable) {
				return true
			}
		}
		var before string // the stable version the change replaces
		next := g.writeSplit(ctx, alias, verbTrafficChange, c, func(s *router.State, c router.Change) (*router.State, error) {
			if m := s.Model(alias); m != nil {
				before = m.Stable
			}
			return s.SetTraffic(c, alias, t)
		})
		if next != nil && next.Model(alias).Stable != before {
			g.onPromoted(alias, next.Model(alias).Stable) // a new stable, as a promote makes
		}
	case "PUT shadow":
		var sh router.Shadow
		if !decodeAdmin(ctx, &sh) {
			return true
		}
		g.writeChange(ctx, alias, c, func(s *router.State, c router.Change) (*router.State, error) {
			return s.SetShadow(c, alias, sh)
		})
	case "POST promote":
		var body struct {
			Reason string `json:"reason"`
		}
		if !decodeAdmin(ctx, &body) {
			return true
		}
		c.Reason = body.Reason
		if m := g.Table().Model(alias); m != nil && m.Canary != nil && refuseUnserved(ctx, m, m.Canary.Name) {
			return true
		}
		if next := g.writeSplit(ctx, alias, "promote", c, func(s *router.State, c router.Change) (*router.State, error) {
			return s.Promote(c, alias)
		}); next != nil {
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
		g.writeSplit(ctx, alias, "rollback", c, func(s *router.State, c router.Change) (*router.State, error) {
			return s.Rollback(c, alias, body.To)
		})
	case "POST rollouts":
		g.startRollout(ctx, alias, c)
	case "GET rollout":
		if g.currentState().Model(alias) == nil {
			writeError(ctx, errAdminUnknownModel)
			return true
		}
		encodeJSON(ctx, fasthttp.StatusOK, g.rollouts.get(alias))
	case "POST rollout/":
		if !decodeAdmin(ctx, &struct{}{}) {
			return true
		}
		if g.currentState().Model(alias) == nil {
			writeError(ctx, errAdminUnknownModel)
			return true
		}
		_, err := g.rollouts.verb(alias, seg[4], actor, exactRevision(c.IfMatch), g.ifMatch(alias, c.IfMatch))
		if se := rolloutStateError(""); errors.As(err, &se) {
			writeError(ctx, &apiError{status: fasthttp.StatusConflict, typ: typeInvalidRequest, code: "rollout_state", message: se.Error()})
			return true
		}
		g.answerChange(ctx, alias, nil, err)
	default:
		writeError(ctx, errAdminNotFound)
	}
	return true
}

// deleteModel removes alias with all its versions from the served table and the store, and
// empties its cache. It is refused while the alias has a running or paused rollout, which
// would go on stepping a model that is gone. The alias's history goes with it, so the log
// records the deletion; the store keeps the revisions before it.
// refuseUnserved answers 409 no_backend_in_service, and reports true, when version would become
// alias's stable (a promote, or a traffic change naming it) while none of its backends is in
// service: stable has no version to fail over to, so every request of the alias would fail.
// ?force=true makes the change anyway (a fleet that is starting, say). A rollback is never
// refused: it is how an operator gets out of trouble.
func refuseUnserved(ctx *fasthttp.RequestCtx, m *router.Model, version string) bool {
	if string(ctx.QueryArgs().Peek("force")) == "true" { // any other value but false is a 400 before
		return false
	}
	for _, v := range m.Versions {
		if v.Name != version {
			continue
		}
		for _, b := range v.Backends {
			if b.Weight > 0 && b.Healthy() {
				return false
			}
		}
		writeError(ctx, &apiError{status: fasthttp.StatusConflict, typ: typeInvalidRequest, code: "no_backend_in_service", param: "version",
			message: "Version `" + version + "` of `" + m.Alias + "` has no backend in service (each is ejected or drained), and as the stable version it would fail every request of the model. Fix or add its backends first, or add ?force=true to make the change anyway."})
		return true
	}
	return false // a version the table does not have yet: the state refuses or accepts the change
}

// forgetVersion drops what the gateway keeps of a deleted version: its cached answers and its
// statistics.
func (g *Gateway) forgetVersion(alias, version string) {
	if g.cacheStore != nil {
		g.cacheStore.ForgetVersion(alias, version)
	}
	g.forgetVersionStats(alias, version)
}

// forgetVersionStats drops a deleted version's statistics and its series on /metrics.
func (g *Gateway) forgetVersionStats(alias, version string) {
	if g.stats != nil {
		g.stats.drop(alias, version)
	}
	// Every series of a version is labelled model="...",version="..." in that order.
	key := `model=` + promLabel(alias) + `,version=` + promLabel(version)
	for _, name := range g.metrics.set.ListMetricNames() {
		if strings.Contains(name, key+",") || strings.Contains(name, key+"}") {
			g.metrics.set.UnregisterMetric(name)
		}
	}
}

func (g *Gateway) deleteModel(ctx *fasthttp.RequestCtx, alias string, c router.Change) {
	var removed *router.ModelState
	del := matchAny(alias, func(s *router.State, c router.Change) (*router.State, error) {
		removed = s.Model(alias)
		return s.DeleteModel(c, alias)
	})
	next, err := g.rollouts.operatorChange(alias, c.Actor, "delete", func(*json.RawMessage) (*router.State, error) {
		// Under the rollouts' lock (operatorChange): no rollout starts or steps meanwhile.
		if r := g.rollouts.byAlias[alias]; r != nil && (r.State == rolloutRunning || r.State == rolloutPaused) {
			return nil, errDeleteDuringRollout
		}
		next, err := g.changeThen(c, del, func() {
			// Under the deploy lock (see changeThen): a model deployed later under this name
			// starts afresh, its statistics, series and cache counters its own.
			if g.cacheStore != nil {
				g.cacheStore.Forget(alias)
			}
			for _, v := range removed.Versions {
				g.forgetVersionStats(alias, v.Name)
			}
		})
		if err == nil {
			delete(g.rollouts.byAlias, alias) // a finished rollout must not show on a new alias of the same name
		}
		return next, err
	})
	switch {
	case errors.Is(err, errDeleteDuringRollout):
		writeError(ctx, &apiError{status: fasthttp.StatusConflict, typ: typeInvalidRequest, code: "rollout_running", param: "alias",
			message: "Model `" + alias + "` has a running or paused rollout; abort it first (POST /admin/models/{alias}/rollout/abort)."})
		return
	case err != nil:
		g.answerChange(ctx, alias, nil, err)
		return
	}
	versions := []string{}
	for _, v := range removed.Versions {
		versions = append(versions, v.Name)
	}
	g.log.Warn("model deleted", "model", alias, "versions", versions, "actor", c.Actor, "revision", next.Revision)
	encodeJSON(ctx, fasthttp.StatusOK, map[string]any{"revision": next.Revision, "deleted": map[string]any{"alias": alias, "versions": versions}})
}

var errDeleteDuringRollout = errors.New("rollout running")

// writeChange runs a change and answers it. It returns the new state, or nil after answering
// an error.
func (g *Gateway) writeChange(ctx *fasthttp.RequestCtx, alias string, c router.Change, op func(*router.State, router.Change) (*router.State, error)) *router.State {
	next, err := g.change(c, matchAny(alias, op))
	return g.answerChange(ctx, alias, next, err)
}

// writeSplit is writeChange for an operator's change of the split (traffic, promote,
// rollback): it never interleaves with a rollout's step, and it ends the alias's running or
// paused rollout, which would otherwise undo the change at its next step.
func (g *Gateway) writeSplit(ctx *fasthttp.RequestCtx, alias, verb string, c router.Change, op func(*router.State, router.Change) (*router.State, error)) *router.State {
	op = matchAny(alias, op)
	endedNow := false // this change ended a rollout: the answer says so
	next, err := g.rollouts.operatorChange(alias, c.Actor, verb, func(ended *json.RawMessage) (*router.State, error) {
		var cur *router.State // the state op saw, under the deploy lock
		next, err := g.change(c, func(s *router.State, c router.Change) (*router.State, error) {
			cur = s
			next, err := op(s, c)
			if err != nil || next == s || ended == nil {
				return next, err
			}
			// The split changes, so the rollout ends: its record goes in the same commit.
			c.Rollout = ended
			next, err = op(s, c)
			if err == nil && verb != verbTrafficChange {
				// A promote or rollback takes back the sticky key the rollout set, as the
				// rollout's own would; a traffic change names the key it wants.
				unsetRolloutSticky(s, next, alias, ended)
			}
			return next, err
		})
		if err == nil && next == cur {
			// The split the alias already has: the rollout goes on, as nothing changed.
			return nil, errUnchanged
		}
		endedNow = err == nil && ended != nil && !noRollout(ended) // a finished one only goes
		return next, err
	})
	if errors.Is(err, errUnchanged) {
		next, err = nil, nil // answer the state now, with its rollout
	}
	note := ""
	if endedNow {
		note = "ended by " + c.Actor + "'s " + verb
	}
	return g.answerChangeNote(ctx, alias, next, err, note)
}

// verbTrafficChange is writeSplit's verb for PUT .../traffic, whose body sets the sticky key.
const verbTrafficChange = "traffic change"

// errUnchanged tells operatorChange that an operator's write changed nothing, so it must not
// end the alias's rollout.
var errUnchanged = errors.New("unchanged")

// answerChange answers a write: {"revision", "model"} with the alias's revision as ETag, or the
// error (a conflict carries the current ETag: what to re-read and retry with). next is the state
// the write made, or nil for a write of the rollouts only (then the answer is the state now).
// It returns the state answered, or nil after answering an error.
func (g *Gateway) answerChange(ctx *fasthttp.RequestCtx, alias string, next *router.State, err error) *router.State {
	return g.answerChangeNote(ctx, alias, next, err, "")
}

// answerChangeNote is answerChange for an operator's change of the split that may have ended
// the alias's rollout: rolloutEnded, when not empty, says why, in the answer's rollout_ended,
// so that whoever made the change learns at once that the rollout no longer runs.
func (g *Gateway) answerChangeNote(ctx *fasthttp.RequestCtx, alias string, next *router.State, err error, rolloutEnded string) *router.State {
	var ro *rollout
	switch {
	case err != nil:
	case next == nil:
		var ros map[string]*rollout
		next, ros = g.viewState()
		ro = ros[alias]
	default:
		ro = g.rollouts.get(alias)
	}
	if err != nil {
		if m := g.currentState().Model(alias); m != nil && errors.Is(err, router.ErrConflict) {
			ctx.Response.Header.Set("ETag", etag(m.Revision))
		}
		writeError(ctx, g.stateError(err))
		return nil
	}
	m := next.Model(alias)
	if m == nil {
		writeError(ctx, errAdminUnknownModel)
		return nil
	}
	ctx.Response.Header.Set("ETag", etag(m.Revision))
	// The model's revision, as its ETag: a write that changed nothing (or a rollout verb,
	// answered with the state now) may come after another model's change, and the latest
	// revision of the whole state, sent back as If-Match, would be a conflict.
	answer := map[string]any{"revision": m.Revision, "model": g.modelView(m, ro)}
	if rolloutEnded != "" {
		answer["rollout_ended"] = rolloutEnded
	}
	encodeJSON(ctx, fasthttp.StatusOK, answer)
	return next
}

// viewState returns the deploy state with every alias's rollout as of the same moment: rollout
// steps and operator changes of the split change both under the rollouts' lock, so a reader
// never sees a rollout "promoted" next to the split it had before.
func (g *Gateway) viewState() (*router.State, map[string]*rollout) {
	return g.rollouts.snapshot(g.currentState)
}

// ifMatchAny is router.Change.IfMatch for If-Match: * (RFC 9110 13.1.1: it matches whatever
// the alias's revision is, as long as the alias exists). It never reaches the router: matchAny
// and ifMatch turn it into the alias's current revision, or into a conflict when the alias does
// not exist. parseRevision refuses it as a revision, so no client can send it by number.
const ifMatchAny = math.MaxUint64

// matchAny wraps a deploy-state operation on alias so that it honours If-Match: *. It runs under
// the deploy lock (it is op, to router), so "the alias exists" and the write are one step. Where
// the alias does not exist, the header fails only a write that would otherwise go through (a
// deploy, which would create the alias): a write the state refuses anyway (an unknown model's
// 404) answers as it would without the header, as RFC 9110 13.2.1 orders it.
func matchAny(alias string, op func(*router.State, router.Change) (*router.State, error)) func(*router.State, router.Change) (*router.State, error) {
	return func(s *router.State, c router.Change) (*router.State, error) {
		if c.IfMatch != ifMatchAny {
			return op(s, c)
		}
		if m := s.Model(alias); m != nil {
			c.IfMatch = m.Revision
			return op(s, c)
		}
		c.IfMatch = 0
		if _, err := op(s, c); err != nil {
			return nil, err
		}
		return nil, errNoSuchAlias(alias)
	}
}

// errNoSuchAlias is the conflict of If-Match: * on an alias that does not exist.
func errNoSuchAlias(alias string) error {
	return &router.FieldError{Field: "If-Match", Msg: fmt.Sprintf("model %q does not exist (If-Match: *)", alias), Err: router.ErrConflict}
}

// ifMatch returns the If-Match check of a write that is not a deploy-state operation (the
// rollout verbs): nil when rev is 0 or alias is still at rev (or exists, for If-Match: *), else
// a conflict.
func (g *Gateway) ifMatch(alias string, rev uint64) func() error {
	return func() error {
		m := g.currentState().Model(alias)
		if rev == ifMatchAny && m == nil {
			return errNoSuchAlias(alias)
		}
		if rev == 0 || rev == ifMatchAny || m == nil || m.Revision == rev {
			return nil
		}
		return &router.FieldError{Field: "If-Match", Msg: fmt.Sprintf("model %q is at revision %d, not %d", alias, m.Revision, rev), Err: router.ErrConflict}
	}
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

// rolloutPlan is the body of POST /admin/models/{alias}/rollouts: what the operator chooses.
// Where a rollout stands (state, step, times, actor, last analysis) is the gateway's to say, so
// those fields are unknown here, a 400 like any other.
type rolloutPlan struct {
	Canary string        `json:"canary"`
	Steps  []rolloutStep `json:"steps"`
	Checks rolloutChecks `json:"checks"`
}

var errRolloutDriftOff = &apiError{status: fasthttp.StatusConflict, typ: typeInvalidRequest, code: "drift_off",
	message: "Rollouts judge the canary by the gateway's statistics, which drift.off in the config turns off; set the split by hand (PUT /admin/models/{alias}/traffic), or turn the statistics on."}

// startRollout validates a plan and starts it, answering like every write: the new revision and
// the model with its rollout.
func (g *Gateway) startRollout(ctx *fasthttp.RequestCtx, alias string, c router.Change) {
	var plan rolloutPlan
	if !decodeAdmin(ctx, &plan) {
		return
	}
	r := rollout{Alias: alias, Actor: c.Actor, Canary: plan.Canary, Steps: plan.Steps, Checks: plan.Checks}
	if err := r.validate(); err != nil {
		writeError(ctx, err)
		return
	}
	// Stored and shown as judged: a threshold left out or at 0 showed as 0 while its default
	// applied.
	r.Checks = r.Checks.withDefaults()
	if g.stats == nil {
		// Without statistics the analysis has nothing to judge by: the rollout would hold its
		// first step for good, neither passing it nor rolling a failing canary back.
		writeError(ctx, errRolloutDriftOff)
		return
	}
	m := g.currentState().Model(alias)
	if m == nil {
		writeError(ctx, errAdminUnknownModel)
		return
	}
	r.StickySet = m.Sticky == "" || m.Sticky == router.Sticky{}.String() // see setCanaryPercent
	if m.Version(r.Canary) == nil {
		writeError(ctx, &apiError{status: fasthttp.StatusNotFound, typ: typeInvalidRequest, code: "version_not_found", param: "canary",
			message: "The model `" + alias + "` has no version `" + r.Canary + "`: deploy it first (GET /admin/models/" + alias + " lists the versions)."})
		return
	}
	if r.Canary == m.Stable {
		writeError(ctx, badRequest("canary", "The canary must be a deployed version other than the stable one."))
		return
	}
	if err := g.rollouts.startIf(&r, exactRevision(c.IfMatch), g.ifMatch(alias, c.IfMatch)); err != nil {
		if errors.Is(err, errRolloutRunning) {
			writeError(ctx, &apiError{status: fasthttp.StatusConflict, typ: typeInvalidRequest, code: "rollout_running", message: err.Error()})
			return
		}
		g.answerChange(ctx, alias, nil, err)
		return
	}
	g.answerChange(ctx, alias, nil, nil)
}

// exactRevision is rev, an If-Match, as router.Change.IfMatch takes it: If-Match: * is 0 (no
// revision), for the writes whose check (ifMatch) has already held the alias to exist.
func exactRevision(rev uint64) uint64 {
	if rev == ifMatchAny {
		return 0
	}
	return rev
}

func etag(rev uint64) string { return `"` + strconv.FormatUint(rev, 10) + `"` }

// parseRevision reads an If-Match value: "12" or 12, or * (ifMatchAny).
func parseRevision(b []byte) (uint64, bool) {
	s := strings.TrimSpace(string(b))
	if s == "*" {
		return ifMatchAny, true
	}
	s = strings.Trim(s, `"`)
	rev, err := strconv.ParseUint(s, 10, 64)
	return rev, err == nil && rev > 0 && rev != ifMatchAny
}
