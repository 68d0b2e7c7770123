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
