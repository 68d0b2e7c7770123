package router

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"

	"github.com/llmgate/llmgate/config"
)

// ListModels reads the model ids a backend serves from /v1/models, and for Ollama also from
// /api/tags (models pulled but listed only there on older versions). apiKey, when set, is sent
// as a bearer token.
func ListModels(ctx context.Context, client *http.Client, base, kind, apiKey string) ([]string, error) {
	body, status, err := get(ctx, client, base+"/v1/models", apiKey)
	if err != nil {
		return nil, err
	}
	if status != http.StatusOK {
		return nil, fmt.Errorf("GET /v1/models: status %d", status)
	}
	var list struct {
		Data []struct {
			ID string `json:"id"`
		} `json:"data"`
	}
	if err := json.Unmarshal(body, &list); err != nil {
		return nil, fmt.Errorf("GET /v1/models: %v", err)
	}
	var ids []string
	add := func(id string) {
		if id != "" && !slices.Contains(ids, id) {
			ids = append(ids, id)
		}
	}
	for _, m := range list.Data {
		add(m.ID)
	}
	if kind == config.KindOllama {
		if body, status, err := get(ctx, client, base+"/api/tags", apiKey); err == nil && status == http.StatusOK {
			var tags struct {
				Models []struct {
					Name string `json:"name"`
				} `json:"models"`
			}
			if json.Unmarshal(body, &tags) == nil {
				for _, m := range tags.Models {
					add(m.Name)
				}
			}
		}
	}
	return ids, nil
}

// CheckServes fails a backend that answers but does not list the model it is to serve: each
// request would get the backend's 404, naming a model the client never asked for. A backend
// whose list cannot be read is given the benefit of the doubt.
func CheckServes(ctx context.Context, client *http.Client, b *Backend) error {
	ids, err := ListModels(ctx, client, b.URL, b.Kind, b.APIKey)
	if err != nil || Serves(ids, b.Kind, b.Model) {
		return nil
	}
	listed := "no models"
	if len(ids) > 8 {
		ids = append(ids[:8:8], "...")
	}
	if len(ids) > 0 {
		listed = strings.Join(ids, ", ")
	}
	return fmt.Errorf("it does not serve model %q; its /v1/models lists %s", b.Model, listed)
}

// URLHint returns advice for a backend URL that ends in /v1, as OpenAI base URLs do, to add to
// a failed probe's error: the gateway appends /v1/chat/completions, /v1/models and the probe
// paths itself, so such a URL asks the server for /v1/v1/... It is "" for any other URL.
func URLHint(url string) string {
	if strings.HasSuffix(strings.TrimSuffix(url, "/"), "/v1") {
		return "; the URL ends in /v1, which llmgate adds itself: give the server's base URL without it"
	}
	return ""
}

// Serves reports whether a backend of kind whose models are ids answers requests for model:
// Ollama reads a name without a tag as its ":latest".
func Serves(ids []string, kind, model string) bool {
	if slices.Contains(ids, model) {
		return true
	}
	return kind == config.KindOllama && !strings.Contains(model, ":") && slices.Contains(ids, model+":latest")
}

func get(ctx context.Context, client *http.Client, url, apiKey string) ([]byte, int, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, 0, err
	}
	if apiKey != "" {
		req.Header.Set("Authorization", "Bearer "+apiKey)
	}
	resp, err := client.Do(req)
	if err != nil {
		return nil, 0, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 4<<20))
	return body, resp.StatusCode, err
}
