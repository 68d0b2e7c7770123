//go:build !race

package fakellm

const raceEnabled = false
