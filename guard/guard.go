// Package guard finds and rewrites personal data (PII) and unsafe content in prompts and
// completions. It works on []byte and knows nothing of HTTP; the gateway calls it before a
// request is forwarded and as a completion flows back.
package guard

// Action is what the guard does with a finding.
type Action uint8

// Actions, from least to most intrusive.
const (
	ActionOff    Action = iota // not scanned
	ActionDetect               // counted only; the text is unchanged ("log" for safety)
	ActionFlag                 // safety: counted and reported in the x-llmgate-guard header
	ActionRedact               // PII: replaced by a typed placeholder such as <EMAIL_ADDRESS_1>
	ActionMask                 // PII: all but the last 4 characters replaced by '*'
	ActionHash                 // PII: replaced by a short keyed hash, stable per value
	ActionBlock                // the request (or the rest of the completion) is refused
)

// Direction tells a prompt (client to backend) from a completion (backend to client).
type Direction uint8

// Directions.
const (
	Prompt Direction = iota
	Completion
)

// PII entity types, named as Presidio names them.
const (
	EntityEmail          = "EMAIL_ADDRESS"
	EntityPhone          = "PHONE_NUMBER"
	EntityCreditCard     = "CREDIT_CARD"
	EntitySSN            = "US_SSN"
	EntityIBAN           = "IBAN_CODE"
	EntityIP             = "IP_ADDRESS"
	EntityMAC            = "MAC_ADDRESS"
	EntityCrypto         = "CRYPTO"
	EntityURLCredentials = "URL_CREDENTIALS"
	EntitySecret         = "SECRET" // API keys and tokens, JWTs, PEM private keys
)
