package gateway

// HoldRollouts takes the rollouts' lock until release is called. An admin write answers with
// its alias's rollout, so a write held there has had its change served and waits before what
// its handler does after the answer.
func HoldRollouts(g *Gateway) (release func()) {
	g.rollouts.mu.Lock()
	return g.rollouts.mu.Unlock
}

// GuardTextChunks turns the stream guard's path for plain text chunks on or off (see
// guardTextChunk) and returns a function that turns it back on.
func GuardTextChunks(on bool) (restore func()) {
	skipTextChunks.Store(!on)
	return func() { skipTextChunks.Store(false) }
}

// ClassifyQueueClosed reports whether g's classifier queue is closed: Close has begun to stop
// its workers.
func ClassifyQueueClosed(g *Gateway) bool { return g.classifyQueue.isClosed() }
