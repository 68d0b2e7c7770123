package config_test
import ("testing";"github.com/goccy/go-yaml";"github.com/llmgate/llmgate/config")
func TestRT(t *testing.T){
 for _, n := range []string{"null","~","true","yes","on","1e3","2024-06-01","2024-06-01T10:00:00Z","0x1F","0o17",".inf",".nan","1_000","12:30","-","-.5","+1",".5","1.","0b101","Null","NULL","y","n","07","-1","--","...","-:", "a:", ":a", "a:b","::","-a", "/", ".", "1:2:3", "0.1.2", "1e", "08", "1_0", "0x", "+.inf", "-.Inf"} {
  c := &config.Config{Models: []config.Model{{Alias: n, Versions: []config.Version{{Version: n, Backends: []config.Backend{{URL:"http://h", Model: n}}}}}}}
  c.ApplyDefaults()
  if err := c.Validate(); err != nil { t.Logf("%q invalid: %v", n, err); continue }
  out, _ := yaml.Marshal(c)
  c2, err := config.Parse(out)
  if err != nil { t.Errorf("%q: %v", n, err); continue }
  if c2.Models[0].Alias != n || c2.Models[0].Versions[0].Version != n || c2.Models[0].Versions[0].Backends[0].Model != n { t.Errorf("%q -> %q %q", n, c2.Models[0].Alias, c2.Models[0].Versions[0].Backends[0].Model) }
 }
}
