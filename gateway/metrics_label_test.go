package gateway

import "testing"

// Label values are quoted as the Prometheus text format has it: only backslash, double quote
// and newline are escaped; other bytes, UTF-8 included, go as they are (strconv.Quote wrote
// \u00e9, which the format does not know).
func TestPromLabel(t *testing.T) {
	for _, tt := range []struct{ in, want string }{
		{"chat", `"chat"`},
		{"http://gpu1:8000/café", `"http://gpu1:8000/café"`},
		{"a\u00a0b", "\"a\u00a0b\""},
		{`a"b\c` + "\n" + "d\te", `"a\"b\\c\nd` + "\t" + `e"`},
		{"", `""`},
	} {
		if got := promLabel(tt.in); got != tt.want {
			t.Errorf("promLabel(%q) = %s, want %s", tt.in, got, tt.want)
		}
	}
}
