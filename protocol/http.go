package protocol

// The module doors of the master's HTTP side, shared by the master, the
// slave, appnode and the browser volunteer (which spells them again in
// JavaScript): GET ModulesPath+"/"+hash fetches a module's bytes, POST
// ModulesPath uploads one.
const (
	ModulesPath = "/modules"
	// HeaderSignatures carries a module's signatures both ways: a JSON
	// array of {"key","sig"} objects (modsig.Signature).
	HeaderSignatures = "X-Anthill-Signatures"
	// HeaderModuleName carries a fetched module's name: its argv[0].
	HeaderModuleName = "X-Anthill-Module-Name"
	// HeaderApp names the app id whose token a request presents; without
	// it the token is taken for the admin's or a volunteer's.
	HeaderApp = "X-Anthill-App"
)
