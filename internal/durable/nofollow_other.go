//go:build !unix

package durable

// NoFollow is an OpenFile flag that refuses a symbolic link as the last
// element of the name. Systems without O_NOFOLLOW rely on the Lstat check of
// Confine alone.
const NoFollow = 0
