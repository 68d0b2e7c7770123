package gateway

import (
	"fmt"
	"net/url"
	"strings"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/llmgate/llmgate/drift"
)

// adminSegments splits the request's path into unescaped segments, from the raw path so that an
// alias or version containing '/' can be sent as %2F ("meta-llama%2FLlama-3.1-8B").
func adminSegments(ctx *fasthttp.RequestCtx) ([]string, bool) {
	raw := string(ctx.Request.URI().PathOriginal())
	if i := strings.IndexByte(raw, '?'); i >= 0 {
		raw = raw[:i]
	}
	parts := strings.Split(strings.Trim(raw, "/"), "/")
	for i, p := range parts {
		u, err := url.PathUnescape(p)
		if err != nil {
			return nil, false
		}
		parts[i] = u
	}
	return parts, true
}

// driftView is one version's drift report as the admin API shows it.
type driftView struct {
	Model       string       `json:"model"`
	Version     string       `json:"version"`
	Reference   string       `json:"reference_mode"` // on_promote | manual | rolling
	Frozen      bool         `json:"reference_frozen"`
	MemoryBytes int          `json:"memory_bytes"`
	Dropped     uint64       `json:"dropped_samples"`
	Report      drift.Report `json:"report"`
}

func (g *Gateway) driftView(vs *versionStats) driftView {
	return driftView{Model: vs.alias, Version: vs.version, Reference: vs.reference, Frozen: vs.rec.Frozen() != nil,
		MemoryBytes: vs.memoryBytes(), Dropped: vs.rec.Dropped(), Report: vs.rec.Report(&g.stats.policy)}
}

var (
	errDriftOff       = &apiError{status: fasthttp.StatusNotFound, typ: typeInvalidRequest, code: "drift_off", message: "Drift statistics are off (drift.off in the config)."}
	errUnknownVersion = &apiError{status: fasthttp.StatusNotFound, typ: typeInvalidRequest, code: "model_not_found", message: "No statistics for that model version; GET /admin/drift lists them."}
)

// serveDrift answers /admin/drift[/{alias}/{version}[/reference]] and /admin/stats/{alias}.
// It reports whether the path was one of those.
func (g *Gateway) serveDrift(ctx *fasthttp.RequestCtx, seg []string) bool {
	if len(seg) < 2 || seg[0] != "admin" || (seg[1] != "drift" && seg[1] != "stats") {
		return false
	}
	write := len(seg) == 5 && seg[1] == "drift" && seg[4] == "reference"
	method := string(ctx.Method())
	// As in serveDeploy: methods that write need the admin role, and any other (HEAD, OPTIONS, a
	// GET on .../reference) is a read token's to try and gets the 405 saying what the URL takes.
	role := roleRead
	switch method {
	case fasthttp.MethodPost, fasthttp.MethodPut, fasthttp.MethodDelete, fasthttp.MethodPatch:
		role = roleAdmin
	}
	if _, err := g.authorize(ctx, role); err != nil {
		writeError(ctx, err)
		return true
	}
	// An unknown URL is a 404 and a known one asked with the wrong method a 405; none of
	// these URLs takes a query parameter.
	switch {
	case seg[1] == "stats" && len(seg) == 3, seg[1] == "drift" && (len(seg) == 2 || len(seg) == 4):
		if method != fasthttp.MethodGet {
			methodNotAllowed(ctx, "GET")
			return true
		}
	case write:
		if method != fasthttp.MethodPost {
			methodNotAllowed(ctx, "POST")
			return true
		}
	default:
		writeError(ctx, errAdminNotFound)
		return true
	}
	if !onlyQueryArgs(ctx) {
		return true
	}
	if g.stats == nil {
		writeError(ctx, errDriftOff)
		return true
	}
	switch {
	case seg[1] == "stats":
		g.serveStats(ctx, seg[2])
	case seg[1] == "drift" && len(seg) == 2:
		views := []driftView{}
		for _, vs := range g.stats.all() {
			views = append(views, g.driftView(vs))
		}
		encodeJSON(ctx, fasthttp.StatusOK, map[string]any{"versions": views})
	case len(seg) == 4:
		vs := g.stats.get(seg[2], seg[3])
		if vs == nil {
			writeError(ctx, errUnknownVersion)
			return true
		}
		encodeJSON(ctx, fasthttp.StatusOK, g.driftView(vs))
	default: // write
		vs := g.stats.get(seg[2], seg[3])
		if vs == nil {
			writeError(ctx, errUnknownVersion)
			return true
		}
		ref := vs.rec.FreezeReference()
		g.log.Info("drift reference frozen", "model", vs.alias, "version", vs.version, "requests", ref.Count())
		out := map[string]any{"model": vs.alias, "version": vs.version,
			"reference": drift.Window{Start: ref.Start, End: ref.End, N: ref.Count()}}
		if min := g.stats.policy.MinSamples; ref.Count() < min {
			out["warning"] = fmt.Sprintf("the reference holds %d requests, fewer than drift.min_samples (%d): every verdict stays insufficient until it is frozen again with more (under reference: on_promote, the stable version's is, once a whole window holds enough)", ref.Count(), min)
		}
		encodeJSON(ctx, fasthttp.StatusOK, out)
	}
	return true
}

// versionSummary is one version's live figures in GET /admin/stats/{alias}.
type versionSummary struct {
	Version string        `json:"version"`
	Window  drift.Window  `json:"window"`
	Summary drift.Summary `json:"summary"`
}

// serveStats shows an alias's versions side by side over their live windows.
func (g *Gateway) serveStats(ctx *fasthttp.RequestCtx, alias string) {
	m := g.Table().Model(alias)
	if m == nil {
		writeError(ctx, unknownModel([]byte(alias)))
		return
	}
	out := []versionSummary{}
	var snap drift.Snapshot
	for _, v := range m.Versions {
		vs := g.stats.get(alias, v.Name)
		if vs == nil {
			continue
		}
		vs.rec.Live(&snap)
		out = append(out, versionSummary{Version: v.Name, Window: drift.Window{Start: snap.Start, End: snap.End, N: snap.Count()}, Summary: snap.Summary()})
	}
	encodeJSON(ctx, fasthttp.StatusOK, map[string]any{"model": alias, "stable": m.Stable.Name, "at": time.Now().UTC(), "versions": out})
}
