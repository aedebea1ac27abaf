package boot

import "github.com/airlockfw/airlock/internal/durable"

// ReadUBootEnv returns the variables of the current copy of the U-Boot
// environment described by cfg, in order, as U-Boot's env import does.
func ReadUBootEnv(fsys durable.FS, cfg Config) ([][2]string, error) {
	c, err := newUBootControl(fsys, cfg)
	if err != nil {
		return nil, err
	}
	_, img, err := c.current()
	if err != nil {
		return nil, err
	}
	e, err := parseUBootData(img.data)
	if err != nil {
		return nil, err
	}
	vars := make([][2]string, len(e.vars))
	for i, v := range e.vars {
		vars[i] = [2]string{v.name, v.value}
	}
	return vars, nil
}

// WriteUBootEnv replaces the environment with vars as U-Boot's saveenv
// does: the non-current copy (of a redundant pair) with the next flags.
func WriteUBootEnv(fsys durable.FS, cfg Config, vars [][2]string) error {
	c, err := newUBootControl(fsys, cfg)
	if err != nil {
		return err
	}
	cur, img, err := c.current()
	if err != nil {
		return err
	}
	e := newEnv()
	for _, v := range vars {
		e.set(v[0], v[1])
	}
	target := cur
	if c.redundant() {
		target = 1 - cur
	}
	return c.writeCopy(target, e, img.flags+1, false)
}

// ReadGrubEnv returns the variables of the GRUB environment block at path,
// in order, as GRUB's load_env reads them.
func ReadGrubEnv(fsys durable.FS, path string) ([][2]string, error) {
	b, err := (&grubControl{fsys: fsys, path: path}).read()
	if err != nil {
		return nil, err
	}
	vars := make([][2]string, len(b.env.vars))
	for i, v := range b.env.vars {
		vars[i] = [2]string{v.name, v.value}
	}
	return vars, nil
}

// SaveGrubEnv sets the given variables in the block at path and keeps the
// others, as GRUB's save_env does.
func SaveGrubEnv(fsys durable.FS, path string, vars [][2]string) error {
	c := &grubControl{fsys: fsys, path: path}
	b, err := c.read()
	if err != nil {
		return err
	}
	for _, v := range vars {
		b.env.set(v[0], v[1])
	}
	data, err := marshalGrubEnv(b)
	if err != nil {
		return err
	}
	return durable.WriteFile(fsys, path, data, 0o644)
}

// RequireTool is requireTool for the external tests.
var RequireTool = requireTool
