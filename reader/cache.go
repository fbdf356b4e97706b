package reader

import (
	"container/list"
	"crypto/sha256"
	"crypto/x509"
	"sync"
)

// cacheEntry is one verified certificate: its chain to anchor and its
// profile were checked; its validity times are checked on every use.
type cacheEntry struct {
	cert   *x509.Certificate
	keyID  []byte
	anchor *anchor
}

// certCache is a bounded LRU cache of verified certificates keyed by the
// SHA-256 of their DER. It is safe for concurrent use.
type certCache struct {
	mu           sync.Mutex
	size         int
	order        *list.List // of *cacheItem, most recent first
	items        map[[sha256.Size]byte]*list.Element
	hits, misses uint64
}

type cacheItem struct {
	key   [sha256.Size]byte
	entry cacheEntry
}

func newCertCache(size int) *certCache {
	return &certCache{size: size, order: list.New(), items: make(map[[sha256.Size]byte]*list.Element)}
}

// get returns the entry for key and marks it most recently used.
func (c *certCache) get(key [sha256.Size]byte) (cacheEntry, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	el, ok := c.items[key]
	if !ok {
		c.misses++
		return cacheEntry{}, false
	}
	c.hits++
	c.order.MoveToFront(el)
	return el.Value.(*cacheItem).entry, true
}

// put stores an entry, evicting the least recently used one when full.
func (c *certCache) put(key [sha256.Size]byte, e cacheEntry) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if el, ok := c.items[key]; ok {
		el.Value.(*cacheItem).entry = e
		c.order.MoveToFront(el)
		return
	}
	c.items[key] = c.order.PushFront(&cacheItem{key: key, entry: e})
	for c.order.Len() > c.size {
		last := c.order.Back()
		c.order.Remove(last)
		delete(c.items, last.Value.(*cacheItem).key)
	}
}

func (c *certCache) stats() CacheStats {
	c.mu.Lock()
	defer c.mu.Unlock()
	return CacheStats{Hits: c.hits, Misses: c.misses, Entries: c.order.Len()}
}
