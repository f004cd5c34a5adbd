// An outside check of rowguard's audit log with Go's transparency-log packages
// (golang.org/x/mod/sumdb/note and tlog, as Debian ships them): signed heads opened with the
// published verifier key, inclusion and consistency proofs checked by tlog. Run by check.sh.
package main

import (
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"strconv"
	"strings"

	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"
)

type Input struct {
	VKey      string `json:"vkey"`
	Tenant    string `json:"tenant_id"`
	OldNote   string `json:"old_note"`
	NewNote   string `json:"new_note"`
	Inclusion []struct {
		LeafIndex int64    `json:"leaf_index"`
		LeafHash  string   `json:"leaf_hash"`
		TreeSize  int64    `json:"tree_size"`
		Path      []string `json:"audit_path"`
	} `json:"inclusion"`
	Consistency []string `json:"consistency"`
}

func hash(s string) tlog.Hash {
	b, err := hex.DecodeString(s)
	if err != nil || len(b) != 32 {
		panic("bad hash " + s)
	}
	var h tlog.Hash
	copy(h[:], b)
	return h
}

func fail(what ...any) {
	fmt.Println(append([]any{"FAIL"}, what...)...)
	os.Exit(1)
}

func open(text string, v note.Verifier) (string, int64, tlog.Hash) {
	n, err := note.Open([]byte(text), note.VerifierList(v))
	if err != nil {
		fail("note:", err)
	}
	lines := strings.Split(n.Text, "\n")
	if len(lines) < 4 {
		fail("checkpoint: too few lines")
	}
	size, err := strconv.ParseInt(lines[1], 10, 64)
	if err != nil || size < 0 {
		fail("checkpoint size:", lines[1])
	}
	root, err := base64.StdEncoding.DecodeString(lines[2])
	if err != nil || len(root) != 32 {
		fail("checkpoint root:", lines[2])
	}
	var h tlog.Hash
	copy(h[:], root)
	return lines[0], size, h
}

func main() {
	var in Input
	if err := json.NewDecoder(os.Stdin).Decode(&in); err != nil {
		panic(err)
	}
	v, err := note.NewVerifier(in.VKey)
	if err != nil {
		fmt.Println("FAIL vkey:", err)
		os.Exit(1)
	}
	oldOrigin, oldSize, oldRoot := open(in.OldNote, v)
	newOrigin, newSize, newRoot := open(in.NewNote, v)
	// One key signs every tenant's log: the origin says whose log a head is.
	if oldOrigin != newOrigin || !strings.HasPrefix(newOrigin, v.Name()+"/") || newOrigin != v.Name()+"/"+in.Tenant {
		fail("origins:", oldOrigin, newOrigin, "want", v.Name()+"/"+in.Tenant)
	}
	if len(in.Inclusion) == 0 {
		fail("no inclusion proof to check")
	}
	fmt.Printf("heads: %s size %d and %s size %d, signatures verified\n", oldOrigin, oldSize, newOrigin, newSize)
	ok := 0
	for _, p := range in.Inclusion {
		if p.TreeSize != newSize {
			fmt.Println("FAIL: proof for another size")
			os.Exit(1)
		}
		var proof tlog.RecordProof
		for _, s := range p.Path {
			proof = append(proof, hash(s))
		}
		if err := tlog.CheckRecord(proof, newSize, newRoot, p.LeafIndex, hash(p.LeafHash)); err != nil {
			fmt.Println("FAIL inclusion of leaf", p.LeafIndex, err)
			os.Exit(1)
		}
		ok++
	}
	fmt.Printf("inclusion: %d proofs verified against the size-%d head\n", ok, newSize)
	var tp tlog.TreeProof
	for _, s := range in.Consistency {
		tp = append(tp, hash(s))
	}
	if err := tlog.CheckTree(tp, newSize, newRoot, oldSize, oldRoot); err != nil {
		fmt.Println("FAIL consistency:", err)
		os.Exit(1)
	}
	fmt.Printf("consistency: size %d extends size %d\n", newSize, oldSize)
	// A tampered proof must fail.
	if len(in.Inclusion) > 0 && len(in.Inclusion[0].Path) > 0 {
		p := in.Inclusion[0]
		var proof tlog.RecordProof
		for _, s := range p.Path {
			proof = append(proof, hash(s))
		}
		proof[0][0] ^= 1
		if tlog.CheckRecord(proof, newSize, newRoot, p.LeafIndex, hash(p.LeafHash)) == nil {
			fmt.Println("FAIL: a flipped bit passed")
			os.Exit(1)
		}
		fmt.Println("a proof with one flipped bit is refused")
	}
}
