// Command main writes vectors.jsonl: what distribution/reference v0.6.0 itself answers for a
// fixed set of inputs, so the Rust tests can hold hoist-reference to upstream's real behaviour
// rather than to our reading of it. Regenerate with `go mod tidy && go run . > vectors.jsonl`.
//
// Inputs: hand-picked edge cases, then pseudo-random strings (fixed seed) over the reference
// alphabet, then structured domain/path:tag@digest combinations around every length limit.
package main

import (
	_ "crypto/sha256" // docker registers sha256, sha384 and sha512, and so does hoist's Digest
	_ "crypto/sha512"
	"encoding/json"
	"fmt"
	"math/rand"
	"os"
	"strings"

	"github.com/distribution/reference"
)

type named struct {
	String         string `json:"s"`
	Domain         string `json:"d"`
	Path           string `json:"p"`
	Tag            string `json:"t,omitempty"`
	Digest         string `json:"g,omitempty"`
	FamiliarName   string `json:"fn,omitempty"`
	FamiliarString string `json:"fs,omitempty"`
}

type vector struct {
	Input      string `json:"in"`
	Normalized *named `json:"norm,omitempty"`
	NormErr    string `json:"norm_err,omitempty"`
	Parsed     *named `json:"parse,omitempty"`
	ParseErr   string `json:"parse_err,omitempty"`
}

func describe(n reference.Named, familiar bool) *named {
	out := &named{String: n.String(), Domain: reference.Domain(n), Path: reference.Path(n)}
	if t, ok := n.(reference.Tagged); ok {
		out.Tag = t.Tag()
	}
	if d, ok := n.(reference.Digested); ok {
		out.Digest = d.Digest().String()
	}
	if familiar {
		out.FamiliarName = reference.FamiliarName(n)
		out.FamiliarString = reference.FamiliarString(n)
	}
	return out
}

func evaluate(input string) vector {
	v := vector{Input: input}
	if n, err := reference.ParseNormalizedNamed(input); err != nil {
		v.NormErr = err.Error()
	} else {
		v.Normalized = describe(n, true)
	}
	if r, err := reference.Parse(input); err != nil {
		v.ParseErr = err.Error()
	} else if n, ok := r.(reference.Named); ok {
		v.Parsed = describe(n, false)
	} else {
		v.ParseErr = "unnamed: " + r.String()
	}
	return v
}

var (
	hex64  = "dbcc1c35ac38df41fd2f5e4130b32ffdb93ebae8b3dbe638c23575912276fc9c"
	sha256 = "sha256:" + hex64
	sha384 = "sha384:" + strings.Repeat("ab", 48)
	sha512 = "sha512:" + strings.Repeat("f", 128)
)

func handPicked() []string {
	cases := []string{
		"", "foo", "Foo", "FOO", "foo:bar", "foo:Bar", "foo:-bar", "foo:.bar", "foo:_bar",
		"user/foo", "User/foo", "user/Foo", "docker.io/foo", "docker.io/Foo", "index.docker.io/foo",
		"index.docker.io/library/foo", "docker.io/library/foo", "docker.io/library/foo/bar",
		"docker.io/localhost/foo", "docker.io/foo.bar/baz", "library/foo", "library/foo/bar",
		"localhost", "localhost/foo", "localhost:5000/foo", "localhost:5000/a/b:v1",
		"LOCALHOST/foo", "localhost.localdomain/foo", "example.com", "example.com:5000",
		"example.com/foo", "example.com:5000/foo:tag", "example.com/Foo", "example.com/foo/Bar:Tag",
		"a_b.c/foo", "a.b_c/foo", "test_com.x/foo", "foo_bar.com/x", "Foo_bar/baz", "foo_bar/baz",
		"a:b/c", "a:1/c", "a:1:2/c", "a:/c", ":1/c", "-a.com/b", "a-.com/b", "a..com/b",
		"[::1]/x", "[::1]:5000/x", "[::1]", "[::1]:5000", "[::1]:x/y", "[::1]x/y", "[]/x",
		"[:::::]/x", "[fe80::1%eth0]:5000/x", "[::ffff:1.2.3.4]/x", "[ABCD::1]/x", "[g::1]/x",
		"::1/x", "fc00::1:5000/debian",
		"foo@" + sha256, "foo:tag@" + sha256, "foo@" + sha384, "foo@" + sha512,
		"foo@sha256:" + strings.ToUpper(hex64), "foo:t@SHA256:" + hex64, "foo@SHA256:" + hex64,
		"foo@sha256:abc", "foo@sha256:" + strings.Repeat("a", 32), "foo@sha256:" + hex64 + "0",
		"foo@md5:" + strings.Repeat("a", 32), "foo@md5+x:" + strings.Repeat("a", 32),
		"foo@0md5:" + strings.Repeat("a", 32), "foo:t@MD5:" + strings.Repeat("a", 32),
		"foo@" + sha256 + "@" + sha256, "foo@", "foo:", "foo:@" + sha256, "@" + sha256, ":tag",
		hex64, strings.ToUpper(hex64), hex64[1:], hex64 + "0", "docker.io/" + hex64, hex64 + ":tag",
		"sha256:" + hex64,
		"K", "K:tag", "\u0130", "\u212B", "é", "foo\n", "foo ", " foo", "foo\t", "foo/",
		"/foo", "foo//bar", "foo/./bar", "foo/../bar", "a/b/c/d/e/f", "a__b", "a___b", "a--b",
		"a-_b", "a_-b", "a._b", "0", "0/0", "0.0/0", "0:0", "0:0/0",
		"https://github.com/docker/docker", "docker/Docker", "Docker/docker",
	}
	for _, n := range []int{126, 127, 128, 129} {
		cases = append(cases, "foo:"+strings.Repeat("t", n+1))
	}
	for _, n := range []int{246, 247, 248, 255, 256} {
		p := strings.Repeat("a", n)
		cases = append(cases, p, "user/"+p[5:], "docker.io/"+p, "example.com/"+p, "example.com/"+p+":tag",
			strings.Repeat("d", 60)+".com/"+p, "Example.com/"+p, "localhost/"+p+"@"+sha256)
	}
	return cases
}

// Pieces that make the interesting boundaries likely.
var atoms = []string{
	"a", "b", "z", "0", "9", "f", "a", "b", "0", "A", ".", ".", "-", "--", "_", "__", "/", "/", ":",
	"@", "[", "]",
	"::1", "localhost", "docker.io", "index.docker.io", "library", "com", "5000", "latest", "sha256",
	"sha256:" + hex64, sha512, hex64, "\u212A", "é", " ",
}

func randomStrings(rng *rand.Rand, count int) []string {
	out := make([]string, 0, count)
	for i := 0; i < count; i++ {
		var b strings.Builder
		for j, n := 0, 1+rng.Intn(8); j < n; j++ {
			b.WriteString(atoms[rng.Intn(len(atoms))])
		}
		out = append(out, b.String())
	}
	return out
}

func structured(rng *rand.Rand, count int) []string {
	domains := []string{"", "", "docker.io/", "index.docker.io/", "localhost/", "localhost:5000/",
		"example.com/", "Example.com/", "EXAMPLE/", "ex_ample.com/", "a-b.c:443/", "[::1]:5000/",
		"[2001:db8::1]/", "1.2.3.4:80/", "user/", "a.b.c.d/", "-x.com/", "x:y/"}
	paths := []string{"foo", "library/foo", "a/b/c", "Foo", "a.b", "a__b-c", "a_.b", "foo/Bar",
		"x", "library/foo/bar", "foo.bar/baz", "localhost/x", hex64, "a-b/c_d/e__f", "a--b.c"}
	tags := []string{"", "", ":latest", ":V1.0_rc-2", ":" + strings.Repeat("t", 128),
		":" + strings.Repeat("t", 129), ":-x", ":", ":a/b"}
	digests := []string{"", "", "@" + sha256, "@" + sha512, "@" + sha384, "@sha256:abc",
		"@SHA256:" + hex64, "@sha256:" + strings.ToUpper(hex64), "@md5:" + strings.Repeat("0", 32),
		"@a+b.c:" + strings.Repeat("e", 40)}
	pick := func(xs []string) string { return xs[rng.Intn(len(xs))] }
	out := make([]string, 0, count)
	for i := 0; i < count; i++ {
		out = append(out, pick(domains)+pick(paths)+pick(tags)+pick(digests))
	}
	return out
}

func main() {
	rng := rand.New(rand.NewSource(20240208))
	inputs := handPicked()
	inputs = append(inputs, randomStrings(rng, 1200)...)
	inputs = append(inputs, structured(rng, 1000)...)

	seen := map[string]bool{}
	enc := json.NewEncoder(os.Stdout)
	enc.SetEscapeHTML(false)
	for _, input := range inputs {
		if seen[input] {
			continue
		}
		seen[input] = true
		if err := enc.Encode(evaluate(input)); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
	}
}
