package tenancy

// Sizes returns how many resolved and refused keys c holds.
func (c *KeyCache) Sizes() (resolved, refused int) {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return len(c.pos), len(c.neg)
}
