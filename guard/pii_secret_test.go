package guard

import (
	"bytes"
	"math/rand/v2"
	"testing"
)

// gitlabPrefixBytewise and secretNameBytewise are gitlabPrefix and secretName as they were
// before their first tests on one or two bytes: the references those must agree with.
func gitlabPrefixBytewise(t []byte, i int) int {
	// Most dashes follow a word that is no "gl..." prefix: rule those out before the list.
	a := i
	for a > 0 && i-a < 7 && t[a-1] >= 'a' && t[a-1] <= 'z' {
		a--
	}
	if i-a < 4 || t[a] != 'g' || t[a+1] != 'l' {
		return 0
	}
	for _, p := range gitlabTokenPrefixes {
		if n := len(p); i >= n && hasPrefixAt(t, i-n, p) && tokenStart(t, i-n) {
			return n
		}
	}
	return 0
}
func secretNameBytewise(t []byte, i int) bool {
	if i == 0 || !isAlnum(t[i-1]) {
		return false
	}
	a := i
	for a > 0 && i-a <= 8 && isAlnum(t[a-1]) {
		a--
	}
	if a > 0 && isWord(t[a-1]) {
		return false // not the name's first '_', or a first part too long for these names
	}
	// "secret" is the first part or the second in each of them: most names are ruled out here.
	if !(i-a == 6 && hasPrefixFold(t, a, "secret")) && !hasPrefixFold(t, i+1, "secret") {
		return false
	}
	b := spanOf(t, i, isWord)
	if b-a > 40 {
		return false
	}
	name := t[a:b]
	secret := false
	for len(name) > 0 {
		part := name
		if k := bytes.IndexByte(name, '_'); k >= 0 {
			part, name = name[:k], name[k+1:]
		} else {
			name = nil
		}
		if len(part) == 6 && hasPrefixFold(part, 0, "secret") {
			secret = true
		}
		if len(name) == 0 { // the last part
			return secret && (len(part) == 6 && hasPrefixFold(part, 0, "secret") || len(part) == 3 && hasPrefixFold(part, 0, "key"))
		}
	}
	return false
}

// TestSecretPrefixTests checks gitlabPrefix and secretName against their references at every
// '-' and '_' of random texts of prefixes, names and their pieces.
func TestSecretPrefixTests(t *testing.T) {
	pieces := []string{"glpat", "gldt", "glrt", "glptt", "glagent", "gl", "g", "l", "x", "ab", "-", "_", " ",
		"secret", "SECRET", "Secret", "key", "KEY", "aws", "access", "s", "S", "e", "1", "<", ">", "EMAIL"}
	r := rand.New(rand.NewPCG(5, 6))
	for range 100000 {
		var b []byte
		for n := 1 + r.IntN(12); n > 0; n-- {
			b = append(b, pieces[r.IntN(len(pieces))]...)
		}
		for i, c := range b {
			if c == '-' && i >= 4 && b[i-1] >= 'a' && b[i-1] <= 'z' {
				if got, want := gitlabPrefix(b, i), gitlabPrefixBytewise(b, i); got != want {
					t.Fatalf("gitlabPrefix(%q, %d) = %d, want %d", b, i, got, want)
				}
			}
			if c == '_' {
				if got, want := secretName(b, i), secretNameBytewise(b, i); got != want {
					t.Fatalf("secretName(%q, %d) = %v, want %v", b, i, got, want)
				}
			}
		}
	}
}
