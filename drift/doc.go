// Package drift keeps live statistics and drift tests per model version.
//
// It is pure computation: no HTTP, no config parsing, no imports of other
// llmgate packages. The gateway builds one [Recorder] per (alias, version),
// calls [Recorder.Observe] at stage 9 of every request (lock-free, no
// allocations), and evaluates drift off the request path with
// [Recorder.Report] or [Evaluate] on [Snapshot] values, which merge exactly
// across time slices and across replicas.
//
// Numerical features go into fixed log-linear histograms (see [Histogram]):
// values below 64 are exact and every other value is known to within a
// relative error of 1/64 (1.5625 %), so every statistic computed here is the
// exact statistic of the data after each value has moved by at most that much.
package drift
