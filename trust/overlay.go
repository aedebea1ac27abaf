package trust

import "slices"

// Overlay is a Store that reads through to a base store and keeps Puts in
// memory until Commit, so that metadata verified by a refresh is persisted
// only when the caller decides (a device: after the install it belongs to
// succeeded), and a refused update leaves the base untouched.
type Overlay struct {
	base    Store
	puts    map[string][]byte
	order   []string
	through bool // committed: Puts go to base
}

// NewOverlay returns an empty overlay over base.
func NewOverlay(base Store) *Overlay {
	return &Overlay{base: base, puts: map[string][]byte{}}
}

// Get implements Store: the last Put, else the base's copy.
func (o *Overlay) Get(name string) ([]byte, error) {
	if d, ok := o.puts[name]; ok {
		return slices.Clone(d), nil
	}
	return o.base.Get(name)
}

// Put implements Store, in memory.
func (o *Overlay) Put(name string, data []byte) error {
	if o.through {
		return o.base.Put(name, data)
	}
	if err := checkStoreName(name); err != nil {
		return err
	}
	if _, ok := o.puts[name]; !ok {
		o.order = append(o.order, name)
	}
	o.puts[name] = slices.Clone(data)
	return nil
}

// Commit writes the Puts to the base in the order they were made (so a
// root history copy lands before root.json, as the client intends),
// skipping files the base already holds byte for byte. After a successful
// Commit, Puts write through to the base.
func (o *Overlay) Commit() error {
	for _, name := range o.order {
		if old, err := o.base.Get(name); err == nil && string(old) == string(o.puts[name]) {
			continue
		}
		if err := o.base.Put(name, o.puts[name]); err != nil {
			return err
		}
	}
	o.through = true
	return nil
}
