package provenance_test

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"

	"github.com/airlockfw/airlock/keys"
	"github.com/airlockfw/airlock/provenance"
)

// A build system attests an image; the vendor checks the envelope against
// the product's policy before the release is staged.
func ExampleCheck() {
	builderKey, _ := keys.Generate(keys.Ed25519)
	image := []byte("firmware image")
	sum := sha256.Sum256(image)

	st := &provenance.Statement{
		Subjects: []provenance.ResourceDescriptor{{Name: "fw.img", Digest: map[string]string{"sha256": hex.EncodeToString(sum[:])}}},
		Predicate: &provenance.SLSA{
			BuildDefinition: provenance.BuildDefinition{
				BuildType:          "https://ci.acme.example/buildtypes/make/v1",
				ExternalParameters: json.RawMessage(`{}`),
				ResolvedDependencies: []provenance.ResourceDescriptor{{
					URI: "git+https://git.acme.example/fw@refs/heads/main", Digest: map[string]string{"gitCommit": "0123456789abcdef0123456789abcdef01234567"}}},
			},
			RunDetails: provenance.RunDetails{Builder: provenance.Builder{ID: "https://ci.acme.example/builders/fw"}},
		},
	}
	payload, _ := provenance.MarshalStatement(st)
	env, _ := provenance.Sign(payload, builderKey)
	data, _ := env.Marshal()

	pub, _ := keys.MarshalPublic(builderKey.Public())
	policy := &provenance.Policy{
		Builders:  []string{"https://ci.acme.example/builders/fw"},
		Sources:   []string{"https://git.acme.example/fw"},
		Signers:   []string{string(pub)},
		Threshold: 1,
	}
	a, err := provenance.Check(data, "acme/router-x1", hex.EncodeToString(sum[:]), policy)
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(a.BuilderID(), a.Source.Repo, a.Source.Commit[:7], len(a.Signers))

	policy.Builders = []string{"https://ci.acme.example/builders/other"}
	_, err = provenance.Check(data, "acme/router-x1", hex.EncodeToString(sum[:]), policy)
	fmt.Println(err)
	// Output:
	// https://ci.acme.example/builders/fw https://git.acme.example/fw 0123456 1
	// provenance: builder "https://ci.acme.example/builders/fw" is not allowed for acme/router-x1 (allowed: https://ci.acme.example/builders/other)
}
