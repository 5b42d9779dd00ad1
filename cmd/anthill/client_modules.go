package main

// The module commands: modules push|list|get|delete, and keygen, which
// makes the signing key push --sign uses.

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/anthill-project/anthill/internal/modsig"
	"github.com/anthill-project/anthill/jsonrpc"
)

// stringList is a flag that may be given more than once.
type stringList []string

func (l *stringList) String() string     { return strings.Join(*l, ",") }
func (l *stringList) Set(s string) error { *l = append(*l, s); return nil }

func runModules(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	c := newClientFlags("modules", "[flags] [list | get HASH | push FILE.wasm | delete HASH]",
		`Manages the WebAssembly modules tasks of kind wasm run. "list" (the
default) shows every module (Modules.List); "get HASH" one (Modules.Get).
"push FILE.wasm" uploads a WASI command and prints its hash, what a task
names it by (Modules.Upload); --sign signs it first with a key from
anthill keygen, for slaves that trust only modules signed by given keys.
Pushing the same bytes again only adds new signatures. "delete HASH" removes
a module no unfinished task names (Modules.Delete).`, stderr)
	name := c.fs.String("name", "", "push: the module's name (default the file's name without .wasm)")
	var keys stringList
	c.fs.Var(&keys, "sign", "push: sign the module with this private key file (anthill keygen); may be repeated")
	operands, err := c.parse(args)
	if err != nil {
		return err
	}
	if (c.wasSet("name") || c.wasSet("sign")) && (len(operands) == 0 || operands[0] != "push") {
		return c.usageError("--name and --sign go with push")
	}
	switch {
	case len(operands) == 0 || len(operands) == 1 && operands[0] == "list":
		return showCall(ctx, stdout, c, "Modules.List", nil, printModules)
	case len(operands) == 2 && operands[0] == "get":
		return showCall(ctx, stdout, c, "Modules.Get", jsonrpc.ModuleParams{Hash: operands[1]}, printModule)
	case len(operands) == 2 && operands[0] == "push":
		return pushModule(ctx, stdout, stderr, c, operands[1], *name, keys)
	case len(operands) == 2 && operands[0] == "delete":
		raw, err := c.callOnce(ctx, "Modules.Delete", jsonrpc.ModuleParams{Hash: operands[1]})
		if err != nil {
			return err
		}
		if c.json {
			return printJSON(stdout, raw)
		}
		_, err = fmt.Fprintf(stdout, "module %s deleted\n", fmtText(operands[1]))
		return err
	}
	return c.usageError("unexpected arguments: %s", strings.Join(operands, " "))
}

// pushModule uploads the file at path, signed with each key file, and
// prints its hash: alone on stdout, so HASH=$(anthill modules push f.wasm)
// works; what was stored goes to stderr.
func pushModule(ctx context.Context, stdout, stderr io.Writer, c *clientFlags, path, name string, keys []string) error {
	code, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	if name == "" {
		name = strings.TrimSuffix(filepath.Base(path), ".wasm")
	}
	p := jsonrpc.ModuleUploadParams{WASM: code, Name: name}
	hash := modsig.Hash(code)
	for _, k := range keys {
		priv, err := modsig.LoadPrivate(k)
		if err != nil {
			return fmt.Errorf("--sign: %w", err)
		}
		p.Signatures = append(p.Signatures, modsig.Sign(priv, hash))
	}
	raw, err := c.callOnce(ctx, "Modules.Upload", p)
	if err != nil {
		return err
	}
	if c.json {
		return printJSON(stdout, raw)
	}
	var res jsonrpc.ModuleUploadResult
	if err := decodeResult("Modules.Upload", raw, &res); err != nil {
		return err
	}
	if res.Hash != hash {
		// The master hashed other bytes than were read here: say so
		// rather than print a hash no task could use.
		return fmt.Errorf("Modules.Upload: the master stored %s, but %s hashes to %s", res.Hash, path, hash)
	}
	if _, err := fmt.Fprintln(stdout, res.Hash); err != nil {
		return err
	}
	fmt.Fprintf(stderr, "# module %s: %d bytes, %d signature(s) sent; tasks name it by the hash above\n", fmtText(res.Name), res.Size, len(p.Signatures))
	return nil
}

func printModules(w io.Writer, l *jsonrpc.ModuleList) error {
	rows := make([][]string, len(l.Modules))
	for i := range l.Modules {
		m := &l.Modules[i]
		rows[i] = []string{m.Hash, fmtText(m.Name), strconv.FormatInt(m.Size, 10), fmtTime(&m.Created), fmtText(m.By), strconv.Itoa(len(m.Signers))}
	}
	return printTable(w, []string{"HASH", "NAME", "SIZE", "CREATED", "BY", "SIGNERS"}, rows)
}

func printModule(w io.Writer, m *jsonrpc.Module) error {
	fs := []field{
		{"hash", m.Hash}, {"name", fmtText(m.Name)}, {"size", strconv.FormatInt(m.Size, 10)},
		{"created", fmtTime(&m.Created)}, {"by", fmtText(m.By)},
	}
	fs = append(fs, listFields("signers", m.Signers, func(k *string) string { return *k })...)
	return printFields(w, fs)
}

// runKeygen writes a new signing key pair: PREFIX.key, the private key
// (mode 0600), and PREFIX.pub, and prints the public key, what slaves are
// told to trust. It never overwrites a key.
func runKeygen(_ context.Context, args []string, stdout, stderr io.Writer) error {
	fl := newFlags("keygen", stderr)
	out := fl.String("out", "anthill-signing", "write the key pair to PREFIX.key (private, mode 0600) and PREFIX.pub")
	fl.Usage = func() {
		fmt.Fprintf(fl.Output(), `usage: anthill keygen [--out PREFIX]

Makes an Ed25519 key pair for signing WASM modules (anthill modules push
--sign PREFIX.key) and prints the public key, which slaves that should run
only your modules are given to trust. An existing key is never overwritten.

flags:
`)
		fl.PrintDefaults()
	}
	if err := parse(fl, args); err != nil {
		return err
	}
	keyPath, pubPath := *out+".key", *out+".pub"
	for _, p := range []string{keyPath, pubPath} {
		if _, err := os.Lstat(p); err == nil {
			return fmt.Errorf("%s exists: refusing to overwrite a key (choose another --out)", p)
		} else if !errors.Is(err, fs.ErrNotExist) {
			return err
		}
	}
	pub, priv, err := modsig.GenerateKey()
	if err != nil {
		return err
	}
	if err := writeNew(keyPath, priv+"\n", 0o600); err != nil {
		return err
	}
	if err := writeNew(pubPath, pub+"\n", 0o644); err != nil {
		os.Remove(keyPath) // a private key without its public half is of no use
		return err
	}
	_, err = fmt.Fprintf(stdout, "%s\n", pub)
	fmt.Fprintf(stderr, "# private key in %s (keep it secret), public key in %s\n", keyPath, pubPath)
	return err
}

// writeNew creates path with data, failing if it exists.
func writeNew(path, data string, perm os.FileMode) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, perm)
	if err != nil {
		return err
	}
	if _, err := f.WriteString(data); err != nil {
		f.Close()
		os.Remove(path)
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		os.Remove(path)
		return err
	}
	return f.Close()
}
