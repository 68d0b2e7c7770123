package guard

import "crypto/sha256"

// Validators and tables: the checks that turn a pattern into a finding.

// luhn reports whether the digit values in d pass the Luhn check.
func luhn(d []byte) bool {
	sum, dbl := 0, false
	for i := len(d) - 1; i >= 0; i-- {
		x := int(d[i])
		if dbl {
			x *= 2
			if x > 9 {
				x -= 9
			}
		}
		sum += x
		dbl = !dbl
	}
	return sum%10 == 0
}

// allSame reports whether every value in d is the same.
func allSame(d []byte) bool {
	for _, x := range d[1:] {
		if x != d[0] {
			return false
		}
	}
	return true
}

// cardBrand reports whether digit values d start with an issuer prefix of a card brand
// whose numbers have len(d) digits.
func cardBrand(d []byte) bool {
	n := len(d)
	p2 := int(d[0])*10 + int(d[1])
	p4 := p2*100 + int(d[2])*10 + int(d[3])
	switch d[0] {
	case 4: // Visa
		return n == 13 || n == 16 || n == 19
	case 2: // Mastercard 2-series
		return n == 16 && p4 >= 2221 && p4 <= 2720
	case 5:
		if p2 >= 51 && p2 <= 55 { // Mastercard
			return n == 16
		}
		return n >= 12 // Maestro 50, 56-59
	case 3:
		switch {
		case p2 == 34 || p2 == 37: // Amex
			return n == 15
		case p2 == 35: // JCB
			return n >= 16 && p4 >= 3528 && p4 <= 3589
		case p2 == 30 || p2 == 36 || p2 == 38 || p2 == 39: // Diners
			return n >= 14
		}
		return false
	case 6: // Discover, UnionPay, Maestro
		return n >= 12
	}
	return false
}

// ibanLen returns the IBAN length of a country code, or 0.
func ibanLen(a, b byte) int {
	return int(ibanLens[[2]byte{a, b}])
}

var ibanLens = map[[2]byte]uint8{}

func init() {
	const table = "AD24AE23AL28AT20AZ28BA20BE16BG22BH22BI27BR29BY28CH21CR22CY28CZ24DE22DJ27DK18DO28" +
		"EE20EG29ES24FI18FK18FO18FR27GB22GE22GI23GL18GR27GT28HR21HU28IE22IL23IQ23IS26IT27" +
		"JO30KW30KZ20LB28LC32LI21LT20LU20LV21LY25MC27MD24ME22MK19MN20MR27MT31MU30NI28NL18" +
		"NO15OM23PK24PL28PS29PT25QA29RO24RS22RU33SA24SC31SD18SE24SI19SK24SM27SO23ST25SV28" +
		"TL23TN24TR26UA29VA22VG24XK20YE30" +
		// Partner countries using IBAN-shaped numbers.
		"DZ26AO25BJ28BF28CM27CV25CF27TD27KM27CG27CI28GQ27GA27GW25HN28IR26MG27ML28MA28MZ25NE28SN28TG28"
	for i := 0; i+4 <= len(table); i += 4 {
		ibanLens[[2]byte{table[i], table[i+1]}] = (table[i+2]-'0')*10 + table[i+3] - '0'
	}
}

// ibanMod97 reports whether the IBAN characters (upper-case letters and digits) pass the
// ISO 7064 mod-97 check.
func ibanMod97(s []byte) bool {
	// r is reduced mod 97 only when it nears the top of its range, not per character: the
	// remainder is the same, at a division per dozen characters instead of one each.
	var r uint64
	step := func(c byte) {
		if isDigit(c) {
			r = r*10 + uint64(c-'0')
		} else {
			r = r*100 + uint64(c-'A') + 10
		}
		if r >= 1<<56 {
			r %= 97
		}
	}
	for _, c := range s[4:] {
		step(c)
	}
	for _, c := range s[:4] {
		step(c)
	}
	return r%97 == 1
}

const b58Alphabet = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"

var b58Val [256]int8

func init() {
	for i := range b58Val {
		b58Val[i] = -1
	}
	for i := 0; i < len(b58Alphabet); i++ {
		b58Val[b58Alphabet[i]] = int8(i)
	}
}

// base58Check reports whether s is a base58check Bitcoin mainnet P2PKH or P2SH address.
func base58Check(s []byte) bool {
	if len(s) < 25 || len(s) > 35 {
		return false
	}
	var b [25]byte
	zeros := 0
	for zeros < len(s) && s[zeros] == '1' {
		zeros++
	}
	for _, c := range s {
		v := int(b58Val[c])
		if v < 0 {
			return false
		}
		for j := len(b) - 1; j >= 0; j-- {
			v += 58 * int(b[j])
			b[j] = byte(v)
			v >>= 8
		}
		if v != 0 {
			return false
		}
	}
	lead := 0
	for lead < len(b) && b[lead] == 0 {
		lead++
	}
	if lead != zeros || (b[0] != 0x00 && b[0] != 0x05) {
		return false
	}
	h := sha256.Sum256(b[:21])
	h = sha256.Sum256(h[:])
	return h[0] == b[21] && h[1] == b[22] && h[2] == b[23] && h[3] == b[24]
}

const bech32Charset = "qpzry9x8gf2tvdw0s3jn54khce6mua7l"

var bech32Val [256]int8

func init() {
	for i := range bech32Val {
		bech32Val[i] = -1
	}
	for i := 0; i < len(bech32Charset); i++ {
		c := bech32Charset[i]
		bech32Val[c] = int8(i)
		if c >= 'a' && c <= 'z' {
			bech32Val[c-'a'+'A'] = int8(i)
		}
	}
}

func bech32Polymod(chk uint32, v byte) uint32 {
	gen := [5]uint32{0x3b6a57b2, 0x26508e6d, 0x1ea119fa, 0x3d4233dd, 0x2a1462b3}
	b := chk >> 25
	chk = (chk&0x1ffffff)<<5 ^ uint32(v)
	for i := 0; i < 5; i++ {
		if (b>>i)&1 != 0 {
			chk ^= gen[i]
		}
	}
	return chk
}

// segwit reports whether s is a valid Bitcoin segwit address (bc1 or tb1): bech32 for
// witness version 0 with a 20- or 32-byte program, bech32m for versions 1 to 16.
func segwit(s []byte) bool {
	if len(s) < 14 || len(s) > 90 {
		return false
	}
	hasLo, hasUp := false, false
	for _, c := range s {
		if isUpper(c) {
			hasUp = true
		} else if c >= 'a' && c <= 'z' {
			hasLo = true
		}
	}
	if hasLo && hasUp {
		return false
	}
	hrp0, hrp1 := asciiLower(s[0]), asciiLower(s[1])
	if !(hrp0 == 'b' && hrp1 == 'c') && !(hrp0 == 't' && hrp1 == 'b') || s[2] != '1' {
		return false
	}
	chk := uint32(1)
	for _, c := range [2]byte{hrp0, hrp1} {
		chk = bech32Polymod(chk, c>>5)
	}
	chk = bech32Polymod(chk, 0)
	for _, c := range [2]byte{hrp0, hrp1} {
		chk = bech32Polymod(chk, c&31)
	}
	data := s[3:]
	if len(data) < 7 {
		return false
	}
	for _, c := range data {
		v := bech32Val[c]
		if v < 0 {
			return false
		}
		chk = bech32Polymod(chk, byte(v))
	}
	ver := bech32Val[data[0]]
	prog := (len(data) - 7) * 5 / 8 // program bytes (padding bits dropped)
	switch {
	case ver == 0:
		return chk == 1 && (prog == 20 || prog == 32)
	case ver <= 16:
		return chk == 0x2bc830a3 && prog >= 2 && prog <= 40
	}
	return false
}

// callingCode returns the length of the ITU country calling code that d (digit values) starts
// with, or 0 when none does.
func callingCode(d []byte) int {
	if len(d) < 3 {
		return 0
	}
	a, b := d[0], d[1]
	switch a {
	case 1, 7:
		return 1
	case 2:
		switch b {
		case 0, 7:
			return 2
		case 8:
			return 0
		}
		return 3
	case 3:
		switch b {
		case 0, 1, 2, 3, 4, 6, 9:
			return 2
		}
		return 3
	case 4:
		if b == 2 {
			return 3
		}
		return 2
	case 5:
		if b == 0 || b == 9 {
			return 3
		}
		return 2
	case 6:
		if b <= 6 {
			return 2
		}
		return 3
	case 8:
		switch b {
		case 1, 2, 4, 6:
			return 2
		case 3:
			return 0
		}
		return 3
	case 9:
		switch b {
		case 6, 7, 9:
			return 3
		}
		return 2
	}
	return 0
}

// nsnRange returns the lengths a national significant number may have after a calling code.
func nsnRange(cc []byte) (lo, hi int) {
	v := 0
	for _, x := range cc {
		v = v*10 + int(x)
	}
	switch v {
	case 1, 7, 91:
		return 10, 10
	case 33, 34, 61:
		return 9, 9
	case 44, 81:
		return 9, 10
	case 31, 27:
		return 9, 9
	case 55, 86:
		return 9, 11
	case 52:
		return 10, 10
	case 49, 39:
		return 6, 13
	}
	return 6, 13
}

// tlds are the top-level domains accepted after '@' besides any two letters (the ccTLDs): the
// common generic ones, the reserved ones people use in examples, and none that is also a file
// extension seen after '@' in code ("icon@2x.png", "pkg@1.0.tgz").
var tlds = map[string]bool{}

func init() {
	for _, s := range []string{
		"com", "net", "org", "edu", "gov", "mil", "int", "info", "biz", "name", "pro", "aero",
		"coop", "museum", "mobi", "asia", "tel", "travel", "jobs", "app", "dev", "page", "cloud",
		"online", "site", "website", "store", "shop", "tech", "xyz", "top", "club", "blog",
		"email", "mail", "digital", "network", "systems", "solutions", "services", "company",
		"agency", "group", "global", "world", "life", "live", "news", "media", "design", "studio",
		"art", "games", "fun", "space", "host", "link", "click", "one", "today", "team", "support",
		"center", "academy", "school", "university", "law", "legal", "finance", "bank",
		"insurance", "health", "care", "clinic", "energy", "social", "chat", "zone", "works",
		"tools", "software", "codes", "engineering", "consulting", "marketing", "money",
		"capital", "ventures", "holdings", "partners", "international", "foundation", "family",
		"guru", "ninja", "rocks", "expert", "photography", "photos", "gallery", "music", "video",
		"city", "london", "nyc", "berlin", "paris", "tokyo", "amsterdam", "swiss", "africa",
		"inc", "llc", "ltd", "gmbh", "ai", "io", "co", "me", "tv",
		"technology", "science", "education", "institute", "management", "industries",
		"enterprises", "properties", "directory", "limited", "exchange", "solar", "build",
		"training", "events", "social", "community", "fitness", "healthcare", "dental",
		"careers", "jobs", "recipes", "restaurant", "cafe", "bar", "pub", "wine", "beer",
		"realty", "homes", "house", "land", "farm", "garden", "fashion", "clothing", "shoes",
		"auto", "cars", "bike", "taxi", "flights", "tours", "vacations", "hotel", "audio",
		"software", "security", "hosting", "domains", "computer", "systems", "data", "cloud",
		"legal", "tax", "accountant", "insure", "loans", "credit", "investments", "fund",
		"example", "test", "invalid", "local", "localdomain", "internal", "corp", "lan", "home",
		"work", "earth", "lol", "vip", "icu", "bio", "eco", "green", "plus", "fyi", "win", "wtf",
		"quest", "monster", "sbs", "cfd", "bond", "beauty", "uno", "lat", "ngo", "ong", "mba", "phd",
		"kiwi", "ovh", "cat", "eus", "gal", "scot", "wales", "cymru", "bayern", "nrw", "wien",
		"koeln", "hamburg", "tirol", "quebec", "boston", "miami", "vegas", "sydney", "melbourne",
		"madrid", "barcelona", "brussels", "istanbul", "moscow", "osaka", "kyoto", "nagoya", "rio",
	} {
		tlds[s] = true
	}
}

// isTLD reports whether the label is a top-level domain: a country code (two letters), one of
// the common generic ones above, or an internationalised one in punycode ("xn--p1ai").
func isTLD(l []byte) bool {
	if len(l) > 4 && hasPrefixFold(l, 0, "xn--") {
		for _, c := range l[4:] {
			if !isAlnum(c) && c != '-' {
				return false
			}
		}
		return len(l) <= 63
	}
	if len(l) < 2 || len(l) > 16 {
		return false
	}
	var buf [16]byte
	for i, c := range l {
		if !isAlpha(c) {
			return false
		}
		buf[i] = asciiLower(c)
	}
	return len(l) == 2 || tlds[string(buf[:len(l)])]
}

// ctxFilter has bit last&31 of [len][first&31] set for each context word of that length,
// first and last byte: most words are ruled out by it before a map lookup.
var ctxFilter [17][32]uint32

// ctxMay reports whether w (lower case, at most 16 bytes) may be a context word.
func ctxMay(w []byte) bool {
	return len(w) > 0 && ctxFilter[len(w)][w[0]&31]&(1<<(w[len(w)-1]&31)) != 0
}

// ctxWords maps a lower-case context word to the categories it supports (or ctxNeg for words
// naming identifiers that are not personal data).
var ctxWords = map[string]uint8{}

func init() {
	add := func(m uint8, words ...string) {
		for _, w := range words {
			ctxWords[w] |= m
			if len(w) < len(ctxFilter) { // nearWords reads no longer word
				ctxFilter[len(w)][w[0]&31] |= 1 << (w[len(w)-1] & 31)
			}
		}
	}
	add(ctxPhone, "phone", "telephone", "tel", "ph", "mobile", "cell", "cellphone", "call",
		"fax", "whatsapp", "sms", "text", "dial", "contact", "reach", "ring", "landline",
		"hotline", "helpline", "telefon", "telefono", "numero", "handy", "portable",
		// In French, German, Spanish, Portuguese and Italian: nearWords reads accented
		// letters as part of a word, so each spelling is listed.
		"tél", "téléphone", "numéro", "appelez", "appeler",
		"telefonnummer", "rufnummer", "handynummer", "mobilnummer", "mobil", "festnetz",
		"anrufen", "teléfono", "móvil", "movil", "celular", "número", "llamar", "llame",
		"telefone", "telemóvel", "móvel", "cel", "fone",
		"cellulare", "chiamare", "chiama")
	add(ctxSSN, "ssn", "ssns", "social", "security", "taxpayer")
	add(ctxCard, "credit", "card", "visa", "mastercard", "amex", "discover", "jcb", "diners",
		"maestro", "cc", "debit", "payment", "pan", "cvv", "kreditkarte")
	add(ctxIP, "ip", "ipv4", "ipv6", "address", "host", "server", "gateway", "subnet", "dns",
		"ping", "peer", "client")
	add(ctxIBAN, "iban", "bic", "swift", "sepa", "bank", "konto", "kontonummer", "compte", "rib",
		"conto", "cuenta", "rekening", "wire", "transfer", "payee", "beneficiary",
		"account", "acct") // which stay negative words for the other categories
	add(ctxNeg, "order", "invoice", "ticket", "tracking", "ref", "reference", "id", "sku",
		"serial", "part", "isbn", "ean", "upc", "gtin",
		"barcode", "po", "case", "confirmation", "transaction", "txn", "batch", "lot", "item",
		"zip", "postal", "routing", "account", "acct", "code", "otp", "pin",
		"step", "waybill", "ein", "itin", "patent", "product", "sn",
		"commande", "facture", "référence", "bestellung", "bestellnummer", "rechnung",
		"kundennummer", "auftrag", "pedido", "factura", "referencia", "cpf", "cnpj",
		"ordine", "fattura", "fatura", "encomenda",
		"siret", "siren", "nif", "aadhaar", "port", "parcel", "shipment")
	add(ctxNeg|ctxNum, "version", "ver", "build", "release", "section", "chapter", "clause",
		"figure", "table", "paragraph", "oid", "firmware", "kernel", "sdk")
}
