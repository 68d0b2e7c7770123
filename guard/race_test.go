//go:build race

package guard

// raceEnabled: sync.Pool drops items at random under -race, so allocation counts mean nothing.
const raceEnabled = true
