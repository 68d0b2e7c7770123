package guard

import (
	"slices"
	"testing"

	"github.com/llmgate/llmgate/config"
)

// The config validates entity names against its own list, so that a typo is reported with its
// line; it must name exactly the types this package finds.
func TestConfigKnowsEveryEntity(t *testing.T) {
	if got := PIIEntities(); !slices.Equal(got, config.PIIEntityTypes) {
		t.Fatalf("guard finds %v, config accepts %v", got, config.PIIEntityTypes)
	}
}
