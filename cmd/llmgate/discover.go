package main

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/llmgate/llmgate/config"
	"github.com/llmgate/llmgate/router"
)

// discoverConfig builds a config from backend URLs: each model a backend serves becomes an alias
// with one version, "default". Backends serving the same model share the alias's pool.
func discoverConfig(backends, kinds []string) (*config.Config, error) {
	if len(kinds) > len(backends) {
		return nil, fmt.Errorf("%d --backend-kind flags for %d --backend flags", len(kinds), len(backends))
	}
	client := &http.Client{Timeout: 5 * time.Second}
	cfg := &config.Config{}
	index := map[string]int{}
	for i, raw := range backends {
		base := strings.TrimSuffix(raw, "/")
		if u, err := url.Parse(base); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return nil, fmt.Errorf("--backend %q: want an http(s) URL such as http://127.0.0.1:8000", raw)
		}
		kind := ""
		if i < len(kinds) {
			kind = kinds[i]
		}
		if kind == "" {
			var err error
			if kind, err = detectKind(client, base); err != nil {
				return nil, fmt.Errorf("backend %s is unreachable: %v", base, shortErr(err))
			}
		}
		if kind != config.KindVLLM && kind != config.KindOllama && kind != config.KindOpenAI {
			return nil, fmt.Errorf("--backend-kind %q: want vllm, ollama or openai", kind)
		}
		models, err := router.ListModels(context.Background(), client, base, kind, "")
		if err != nil {
			return nil, fmt.Errorf("backend %s: %v%s", base, shortErr(err), router.URLHint(base))
		}
		if len(models) == 0 {
			return nil, fmt.Errorf("backend %s serves no models%s", base, router.URLHint(base))
		}
		for _, m := range models {
			b := config.Backend{URL: base, Kind: kind, Model: m}
			if j, ok := index[m]; ok {
				cfg.Models[j].Versions[0].Backends = append(cfg.Models[j].Versions[0].Backends, b)
				continue
			}
			index[m] = len(cfg.Models)
			cfg.Models = append(cfg.Models, config.Model{
				Alias: m, Stable: "default",
				Versions: []config.Version{{Version: "default", Backends: []config.Backend{b}}},
			})
		}
	}
	// Ollama lists a model pulled without a tag as "name:latest", and its own API answers
	// "name" too: so does the gateway, unless another model is called "name".
	for _, m := range cfg.Models {
		b := m.Versions[0].Backends[0]
		name, ok := strings.CutSuffix(m.Alias, ":latest")
		if _, taken := index[name]; ok && !taken && b.Kind == config.KindOllama {
			index[name] = len(cfg.Models)
			short := m
			short.Alias = name
			short.Versions = []config.Version{{Version: "default", Backends: slices.Clone(m.Versions[0].Backends)}}
			cfg.Models = append(cfg.Models, short)
		}
	}
	return cfg, nil
}

// detectKind tells vLLM (GET /version answers {"version":...}) from Ollama (GET / answers
// "Ollama is running") from any other OpenAI-compatible server.
func detectKind(client *http.Client, base string) (string, error) {
	body, status, err := get(client, base+"/")
	if err != nil {
		return "", err
	}
	if status == http.StatusOK && strings.Contains(string(body), "Ollama is running") {
		return config.KindOllama, nil
	}
	if _, status, err := get(client, base+"/health"); err == nil && status == http.StatusOK {
		if body, status, err := get(client, base+"/version"); err == nil && status == http.StatusOK && strings.Contains(string(body), `"version"`) {
			return config.KindVLLM, nil
		}
	}
	return config.KindOpenAI, nil
}

func get(client *http.Client, url string) ([]byte, int, error) {
	resp, err := client.Get(url)
	if err != nil {
		return nil, 0, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 4<<20))
	return body, resp.StatusCode, err
}
