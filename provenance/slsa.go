package provenance

import (
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"github.com/airlockfw/airlock/internal/strictjson"
)

// SLSA is a parsed SLSA provenance v1 predicate
// (https://slsa.dev/spec/v1.0/provenance#schema).
type SLSA struct {
	BuildDefinition BuildDefinition `json:"buildDefinition"`
	RunDetails      RunDetails      `json:"runDetails"`
}

// BuildDefinition is the predicate's buildDefinition.
type BuildDefinition struct {
	BuildType            string               `json:"buildType"`
	ExternalParameters   json.RawMessage      `json:"externalParameters"`
	InternalParameters   json.RawMessage      `json:"internalParameters,omitempty"`
	ResolvedDependencies []ResourceDescriptor `json:"resolvedDependencies,omitempty"`
}

// RunDetails is the predicate's runDetails.
type RunDetails struct {
	Builder    Builder              `json:"builder"`
	Metadata   *BuildMetadata       `json:"metadata,omitempty"`
	Byproducts []ResourceDescriptor `json:"byproducts,omitempty"`
}

// Builder identifies the build platform.
type Builder struct {
	ID                  string               `json:"id"`
	Version             json.RawMessage      `json:"version,omitempty"`
	BuilderDependencies []ResourceDescriptor `json:"builderDependencies,omitempty"`
}

// BuildMetadata is runDetails.metadata.
type BuildMetadata struct {
	InvocationID string `json:"invocationId,omitempty"`
	StartedOn    string `json:"startedOn,omitempty"`
	FinishedOn   string `json:"finishedOn,omitempty"`
}

// ParsePredicate parses a SLSA provenance v1 predicate strictly: no
// unknown or duplicate fields, buildType and runDetails.builder.id
// required (non-empty URIs), externalParameters a JSON object, at most
// MaxDependencies resolvedDependencies, byproducts and builder
// dependencies, each a valid ResourceDescriptor, timestamps RFC 3339.
func ParsePredicate(raw []byte) (*SLSA, error) {
	var p SLSA
	if err := (strictjson.Limits{Size: MaxPayloadSize, Depth: MaxDepth}).Unmarshal(raw, &p); err != nil {
		return nil, fmt.Errorf("%w predicate: %w", ErrMalformed, err)
	}
	if err := p.check(); err != nil {
		return nil, fmt.Errorf("%w predicate: %w", ErrMalformed, err)
	}
	return &p, nil
}

func (p *SLSA) check() error {
	bd, rd := &p.BuildDefinition, &p.RunDetails
	if bd.BuildType == "" {
		return fmt.Errorf("buildDefinition.buildType is missing")
	}
	if err := checkString(bd.BuildType); err != nil {
		return fmt.Errorf("buildDefinition.buildType: %w", err)
	}
	if len(bd.ExternalParameters) == 0 {
		return fmt.Errorf("buildDefinition.externalParameters is missing")
	}
	if err := checkObject(bd.ExternalParameters); err != nil {
		return fmt.Errorf("buildDefinition.externalParameters: %w", err)
	}
	if err := checkObject(bd.InternalParameters); err != nil {
		return fmt.Errorf("buildDefinition.internalParameters: %w", err)
	}
	if rd.Builder.ID == "" {
		return fmt.Errorf("runDetails.builder.id is missing")
	}
	if err := checkString(rd.Builder.ID); err != nil {
		return fmt.Errorf("runDetails.builder.id: %w", err)
	}
	if err := checkObject(rd.Builder.Version); err != nil {
		return fmt.Errorf("runDetails.builder.version: %w", err)
	}
	for name, list := range map[string][]ResourceDescriptor{
		"buildDefinition.resolvedDependencies":   bd.ResolvedDependencies,
		"runDetails.byproducts":                  rd.Byproducts,
		"runDetails.builder.builderDependencies": rd.Builder.BuilderDependencies,
	} {
		if len(list) > MaxDependencies {
			return fmt.Errorf("%s: %d entries, the limit is %d", name, len(list), MaxDependencies)
		}
		for i := range list {
			if err := list[i].check(fmt.Sprintf("%s[%d]", name, i)); err != nil {
				return err
			}
		}
	}
	if m := rd.Metadata; m != nil {
		if err := checkString(m.InvocationID); err != nil {
			return fmt.Errorf("runDetails.metadata.invocationId: %w", err)
		}
		for name, t := range map[string]string{"startedOn": m.StartedOn, "finishedOn": m.FinishedOn} {
			if t == "" {
				continue
			}
			if _, err := time.Parse(time.RFC3339Nano, t); err != nil {
				return fmt.Errorf("runDetails.metadata.%s: want an RFC 3339 time, got %q", name, truncate(t))
			}
		}
	}
	return nil
}

func truncate(s string) string {
	if len(s) > 64 {
		return s[:64] + "..."
	}
	return s
}

// Source is the source revision a build says it built: a repository URI
// and a commit.
type Source struct {
	URI    string // as the provenance wrote it, e.g. git+https://github.com/acme/fw@refs/heads/main
	Repo   string // NormalizeRepo(URI), e.g. https://github.com/acme/fw
	Commit string // the gitCommit (else sha1) digest
}

// Source returns the build's source: the first resolvedDependency with a
// gitCommit or sha1 digest and a URI (SLSA lists the top-level source
// first), else externalParameters.source as a ResourceDescriptor
// ({"uri":…,"digest":{"gitCommit":…}}). ok is false when there is none.
func (p *SLSA) Source() (Source, bool) {
	for _, d := range p.BuildDefinition.ResolvedDependencies {
		if s, ok := sourceOf(d); ok {
			return s, true
		}
	}
	var ext struct {
		Source *ResourceDescriptor `json:"source"`
	}
	if json.Unmarshal(p.BuildDefinition.ExternalParameters, &ext) == nil && ext.Source != nil && ext.Source.check("source") == nil {
		return sourceOf(*ext.Source)
	}
	return Source{}, false
}

func sourceOf(d ResourceDescriptor) (Source, bool) {
	c := d.Digest["gitCommit"]
	if c == "" {
		c = d.Digest["sha1"]
	}
	if c == "" || d.URI == "" {
		return Source{}, false
	}
	return Source{URI: d.URI, Repo: NormalizeRepo(d.URI), Commit: c}, true
}

// NormalizeRepo reduces a source URI to the repository it names, so that a
// policy entry and a provenance URI compare: it drops a "git+" scheme
// prefix, an "@ref" suffix after the path, a trailing "/" and ".git", and
// lowercases the scheme and host. "git+https://github.com/acme/fw.git@refs/heads/main"
// and "https://github.com/acme/fw" are the same repository.
func NormalizeRepo(uri string) string {
	u := strings.TrimPrefix(uri, "git+")
	scheme, rest, ok := strings.Cut(u, "://")
	if !ok {
		return strings.TrimSuffix(strings.TrimSuffix(u, "/"), ".git")
	}
	host, path, _ := strings.Cut(rest, "/")
	if i := strings.LastIndex(path, "@"); i >= 0 {
		path = path[:i]
	}
	path = strings.TrimSuffix(strings.TrimSuffix(path, "/"), ".git")
	out := strings.ToLower(scheme) + "://" + strings.ToLower(host)
	if path != "" {
		out += "/" + path
	}
	return out
}
