package guard

import (
	"math/big"
	"math/rand/v2"
	"slices"
	"strconv"
	"strings"
	"testing"
)

func mustPII(t testing.TB, opts PIIOptions) *PII {
	t.Helper()
	p, err := NewPII(opts)
	if err != nil {
		t.Fatalf("NewPII: %v", err)
	}
	return p
}

// found renders findings as "TYPE:value".
func found(text string, fs []Finding) []string {
	out := []string{}
	for _, f := range fs {
		out = append(out, f.Entity+":"+text[f.Start:f.End])
	}
	return out
}

func TestPIIFind(t *testing.T) {
	p := mustPII(t, PIIOptions{})
	tests := []struct {
		name string
		text string
		want []string
	}{
		// Emails.
		{"email", "write to alice.j@example.com today", []string{"EMAIL_ADDRESS:alice.j@example.com"}},
		{"email sentence end", "Ping uma@example.com.", []string{"EMAIL_ADDRESS:uma@example.com"}},
		{"email plus tag", "mailto:carol+news@mail.example.org?x", []string{"EMAIL_ADDRESS:carol+news@mail.example.org"}},
		{"email cctld", "jo@ex.io and a@b.co.uk", []string{"EMAIL_ADDRESS:jo@ex.io", "EMAIL_ADDRESS:a@b.co.uk"}},
		{"email glued sentence", "at john@example.com.Thanks", []string{"EMAIL_ADDRESS:john@example.com"}},
		{"email before dashes", "john@example.com-- thanks", []string{"EMAIL_ADDRESS:john@example.com"}},
		{"email in markdown italics", "Contact: _dave@example.com_ or __erin@example.org__, thanks",
			[]string{"EMAIL_ADDRESS:dave@example.com", "EMAIL_ADDRESS:erin@example.org"}},
		{"not email: underscore-joined names", "x_dave@example.com_ _dave@example.com_v2 file_dave@example.com_backup.txt", nil},
		{"email non-ascii local part", "Email: josé.garcía@empresa.es, E-Mail: müller@beispiel.de",
			[]string{"EMAIL_ADDRESS:josé.garcía@empresa.es", "EMAIL_ADDRESS:müller@beispiel.de"}},
		{"email idn domain", "Schreib an info@bücher.de, an post@müller-straße.example.com oder an почта@пример.рф.",
			[]string{"EMAIL_ADDRESS:info@bücher.de", "EMAIL_ADDRESS:post@müller-straße.example.com", "EMAIL_ADDRESS:почта@пример.рф"}},
		{"email idn domain glued", "mail an jörg@straße.de—danke", []string{"EMAIL_ADDRESS:jörg@straße.de"}},
		{"not email: idn no tld", "x@größe and y@größe.längen", nil},
		{"email after curly quote", "“bob@example.com”", []string{"EMAIL_ADDRESS:bob@example.com"}},
		// Named credentials.
		{"password in a connection string", "Server=db;User Id=sa;Password=Xk9#mP2vLq7w;Encrypt=True",
			[]string{"SECRET:Xk9#mP2vLq7w"}},
		{"password quoted in code", `connect(user="app", password="Xk9#mP2vLq7w")`, []string{"SECRET:Xk9#mP2vLq7w"}},
		{"password in a url query", "GET /login?user=bob&password=S3cure9Pass&next=/", []string{"SECRET:S3cure9Pass"}},
		{"not secret: password fetched in code", `connect(host="db", password=os.getenv("DB_PW"), user=u)`, nil},
		{"not secret: password compared", "if password==null { return }", nil},
		// A credential's name that ends the text has no value: nothing, and no read past the end.
		{"not secret: -SessionToken ends the text", "Set-AWSCredential -AccessKey x -SessionToken", nil},
		{"not secret: -SecretKey ends the text", "Set-AWSCredential -AccessKey x -SecretKey", nil},
		{"not secret: aws_session_token ends the text", "put it in aws_session_token", nil},
		{"not secret: AWS_SESSION_TOKEN ends the text", "export AWS_SESSION_TOKEN", nil},
		{"not secret: password from a variable", "login(user, password=cfg.db_pw) or login(user, password=dbpass1, x)", nil},
		{"not secret: powershell variable", "Set-AWSCredential -SecretKey $env:AWS_SECRET_ACCESS_KEY -SessionToken (Get-Token)", nil},
		{"email apostrophe in local part", "Write to o'reilly@example.com or 'd'arcy.o'neil@example.org'.",
			[]string{"EMAIL_ADDRESS:o'reilly@example.com", "EMAIL_ADDRESS:d'arcy.o'neil@example.org"}},
		{"email newer gtlds", "maria@atelier-nord.work, jordi@ajuntament.cat, team@pixel.lol", []string{"EMAIL_ADDRESS:maria@atelier-nord.work", "EMAIL_ADDRESS:jordi@ajuntament.cat", "EMAIL_ADDRESS:team@pixel.lol"}},
		{"not email: hyphenated tld", "a@b.com-foo", nil},
		{"not email: decorator", "@dataclass\nclass P: pass", nil},
		{"not email: package", "npm i @types/node@20.10.5 lodash@4.17.21", nil},
		{"not email: retina file", "icon@2x.png", nil},
		{"not email: host", "ssh git@localhost", nil},
		{"not email: matrix op", "y = x@w.shape", nil},

		// URL credentials.
		{"url creds", "postgres://admin:S3cr3t@db.example.com:5432/app", []string{"URL_CREDENTIALS:admin:S3cr3t"}},
		{"url creds with # in the password", "postgres://u:pa#ss@db.example.com/app", []string{"URL_CREDENTIALS:u:pa#ss"}},
		{"url creds scheme+", "mongodb+srv://svc:Xk29@cluster0.example.net/x", []string{"URL_CREDENTIALS:svc:Xk29"}},
		{"url creds token password", "https://x-access-token:ghp_XyKAtICmgglPqXmZTqGD47LfKqJNk3l79zdc@github.com/o/r",
			[]string{"URL_CREDENTIALS:x-access-token", "SECRET:ghp_XyKAtICmgglPqXmZTqGD47LfKqJNk3l79zdc"}},
		{"url no password", "https://user@example.com/ and https://example.com/@x", nil},
		{"url no creds", "postgres://localhost:5432/app", nil},

		// Phones.
		{"phone us parens", "Call me at (415) 555-0132 tomorrow.", []string{"PHONE_NUMBER:(415) 555-0132"}},
		{"phone us dashes", "cell 415-555-0198, thanks", []string{"PHONE_NUMBER:415-555-0198"}},
		{"phone us dots", "415.555.0176", []string{"PHONE_NUMBER:415.555.0176"}},
		{"phone us toll free", "1-800-555-0199", []string{"PHONE_NUMBER:1-800-555-0199"}},
		{"phone e164", `"phone": "+14155550132"`, []string{"PHONE_NUMBER:+14155550132"}},
		{"phone uk intl", "+44 20 7946 0958", []string{"PHONE_NUMBER:+44 20 7946 0958"}},
		{"phone uk trunk", "+44 (0)20 7946 0958", []string{"PHONE_NUMBER:+44 (0)20 7946 0958"}},
		{"phone uk national", "Call 020 7946 0018 now", []string{"PHONE_NUMBER:020 7946 0018"}},
		{"phone fr national", "le 06 39 98 56 78.", []string{"PHONE_NUMBER:06 39 98 56 78"}},
		{"phone jp", "+81 3-1234-5678", []string{"PHONE_NUMBER:+81 3-1234-5678"}},
		{"phone 00 prefix", "Telefon: 0049 30 12345678", []string{"PHONE_NUMBER:0049 30 12345678"}},
		{"phone after year", "In 2024 415-555-0101 rang", []string{"PHONE_NUMBER:415-555-0101"}},
		{"phone plain with context", "my phone is 4155550132", []string{"PHONE_NUMBER:4155550132"}},
		{"phone plain after snake_case keys", `{"phone_number": "4155550132", "home_phone": "4155550133"}`,
			[]string{"PHONE_NUMBER:4155550132", "PHONE_NUMBER:4155550133"}},
		{"not phone: a placeholder is no context", "<PHONE_NUMBER_1> 4155550132", nil},
		{"phone local with context", "call 555-0134", []string{"PHONE_NUMBER:555-0134"}},
		{"phone fr dots", "Appelez le 06.39.98.56.78.", []string{"PHONE_NUMBER:06.39.98.56.78"}},
		{"phone fr dots in json", `{"tel":"01.99.00.12.34"}`, []string{"PHONE_NUMBER:01.99.00.12.34"}},
		{"not phone: oid and dotted version", "OID 1.3.6.1.4.1.311 and build 10.0.19045.3693 and 192.168.1.1.5", nil},
		{"phone context accented", "Mi móvil: 912 345 678, MÓVIL 912 345 679", []string{"PHONE_NUMBER:912 345 678", "PHONE_NUMBER:912 345 679"}},
		{"phone context compound", "Telefonnummer 98765 43210; Tél.\u00a0: 4155550132", []string{"PHONE_NUMBER:98765 43210", "PHONE_NUMBER:4155550132"}},
		{"phone context portuguese", "celular 11 91234-5678", []string{"PHONE_NUMBER:11 91234-5678"}},
		{"phone context after a no-break space", "Num\u00e9ro\u00a0tel 4155550132", []string{"PHONE_NUMBER:4155550132"}},
		{"not phone: german customer number", "Kundennummer 0301 2345678", nil},
		{"not phone: accented word is no context", "Télé 4155550132 and Ré 912 345 678", nil},
		{"phone br parens", "Ligue para (11) 91234-5678 ou (21)3456-7890.", []string{"PHONE_NUMBER:(11) 91234-5678", "PHONE_NUMBER:(21)3456-7890"}},
		{"not phone: br shape without context", "Peças 11 91234-5678 e 21 3456-7890", nil},
		{"not phone: br bad area or prefix", "(10) 91234-5678, (11) 81234-5678, (11) 6543-2109", nil},
		{"phone in mobile", "Rahul: 98765 43210, office 080 2345 6789, home 098765 43211", []string{"PHONE_NUMBER:98765 43210", "PHONE_NUMBER:080 2345 6789", "PHONE_NUMBER:098765 43211"}},
		{"not phone: in shape", "Order 98765 43210, ports 60000 61000, digits 12345 67890, range 60000-61000", nil},
		{"not phone: in shape in a row of figures", "Q1 71234 80321 91234 65432, limits 70000 80000", nil},
		{"not phone: es and br shapes in a longer run", "Row 612 34 56 78 90 and 7 612 34 56 78", nil},
		{"phone es mobile", "Llámame al 612 34 56 78 o al 912 34 56 78.", []string{"PHONE_NUMBER:612 34 56 78", "PHONE_NUMBER:912 34 56 78"}},
		{"not phone: es shapes", "Total 912 345 678 EUR, invoice 612 34 56 78, 512 34 56 78", nil},
		{"phone cn mobile", "Call Li Wei at 138 0013 8000 or 139-1234-5678.", []string{"PHONE_NUMBER:138 0013 8000", "PHONE_NUMBER:139-1234-5678"}},
		{"phone mx with context", "Mi teléfono es 55 1234 5678, celular 33 8765 4321.", []string{"PHONE_NUMBER:55 1234 5678", "PHONE_NUMBER:33 8765 4321"}},
		{"not phone: cn and mx shapes", "Order 138 0013 8000 shipped; totals 55 1234 5678 and 55 0000 0000; batch 128 0013 8000", nil},
		{"phone nbsp", "Appelez-moi au 06\u00a012\u00a034\u00a056\u00a078.", []string{"PHONE_NUMBER:06\u00a012\u00a034\u00a056\u00a078"}},
		{"phone narrow nbsp", "Tel: +49\u202f30\u202f901820", []string{"PHONE_NUMBER:+49\u202f30\u202f901820"}},
		{"phone en dash", "Call +1 (415) 555\u20132671", []string{"PHONE_NUMBER:+1 (415) 555\u20132671"}},
		{"phone de slash", "Tel. 030/12345678", []string{"PHONE_NUMBER:030/12345678"}},
		{"phone de spaced slash", "Handy: 0176 / 12345678", []string{"PHONE_NUMBER:0176 / 12345678"}},
		{"not phone: slash without context", "Aktenzeichen 030/12345678 and 0176 / 12345678", nil},
		{"not phone: dates with slashes", "call on 03/15/2024 or 015/2024", nil},
		{"not phone: order nbsp", "Bestellnummer 4839\u00a0201\u00a0556 and order 112\u20134839201\u20135567385", nil},
		{"not phone: plain digits", "epoch 1700000000 and MAX 2147483647", nil},
		{"not phone: order", "Order number: 4839201556", nil},
		{"not phone: order dashes", "order 112-4839201-5567385", nil},
		{"not phone: id context", "ID 415-555-0132", nil},
		{"not phone: groups of a tracking number", "Tracking 1Z 999 AA1 01 2345 6784 and 1Z\u00a0999\u00a0AA1\u00a00123\u00a04567\u00a084", nil},
		{"not ssn: groups of a code", "Ref QX7 412 67 3089", nil},
		{"phone after a code with a letter last", "Flat 4B 020 7946 0958, room 12 020 7946 0959",
			[]string{"PHONE_NUMBER:020 7946 0958", "PHONE_NUMBER:020 7946 0959"}},
		{"not phone: order number word", "Pedido número 45-8812-0093, ordine numero 45-8812-0094, fattura numero 45-8812-0095, RÉFÉRENCE NUMÉRO 45-8812-0090", nil},
		{"not phone: pt order", "número da encomenda 45-8812-0096 e fatura 45-8812-0097", nil},
		{"phone after a number word", "Mi número: 912 345 678, o numero 45-8812-0098", []string{"PHONE_NUMBER:912 345 678", "PHONE_NUMBER:45-8812-0098"}},
		// A negative word further off does not hide a strong match: order and support text is
		// where customers' numbers are.
		{"phone after an order number", "Order 5521 shipped to John, +44 20 7946 0958", []string{"PHONE_NUMBER:+44 20 7946 0958"}},
		{"phone after invoice", "Invoice for Jane Doe (415) 555-0132", []string{"PHONE_NUMBER:(415) 555-0132"}},
		{"phone after a ticket", "Support ticket #4411 from +33 6 12 34 56 78", []string{"PHONE_NUMBER:+33 6 12 34 56 78"}},
		{"ip after a ticket", "ticket opened from 203.0.113.7", []string{"IP_ADDRESS:203.0.113.7"}},
		{"ipv6 after case", "Case opened: 2001:db8::1", []string{"IP_ADDRESS:2001:db8::1"}},
		{"not phone: bad calling code", "+28 1234 5678", nil},
		{"not phone: short intl", "+44 2079", nil},
		{"not phone: timestamp", "2024-03-15T14:22:05Z and 2023-11-02 08:15:30", nil},
		{"not phone: date", "15.03.2024 and 03/15/2024 and 01.02.2024", nil},
		{"not phone: isbn", "ISBN 978-0-306-40615-7 and 0-306-40615-2", nil},
		{"not phone: money", "$1,299.99 and 4,155,550,132 yen and 1 234 567,89", nil},
		{"not phone: tz offset", "16:01:07 +0200", nil},

		// Cards.
		{"card visa", "card 4111 1111 1111 1111 exp", []string{"CREDIT_CARD:4111 1111 1111 1111"}},
		{"card plain", "4672268918784119, exp 09/27", []string{"CREDIT_CARD:4672268918784119"}},
		{"card dashes mc2", "2691-0055-3338-1629", []string{"CREDIT_CARD:2691-0055-3338-1629"}},
		{"card amex", "3706-442774-09048", []string{"CREDIT_CARD:3706-442774-09048"}},
		{"card diners", "3650-194359-2274", []string{"CREDIT_CARD:3650-194359-2274"}},
		{"card visa 19", "4305457875255060487", []string{"CREDIT_CARD:4305457875255060487"}},
		{"card in query", "pay?cc=3538-5972-1875-8035&amount=12", []string{"CREDIT_CARD:3538-5972-1875-8035"}},
		{"card nbsp", "Carte : 4111\u00a01111\u00a01111\u00a01111", []string{"CREDIT_CARD:4111\u00a01111\u00a01111\u00a01111"}},
		{"card en dash", "card 3706\u2013442774\u201309048", []string{"CREDIT_CARD:3706\u2013442774\u201309048"}},
		{"not card: luhn nbsp", "4062\u00a07253\u00a01576\u00a00298", nil},
		{"not card: luhn", "4062725315760298", nil},
		{"not card: 64-bit ids named by id keys", `dd.trace_id=4402614014193141705 [traceId=4661605344688263728] "parent_id": 357735531115003519, X-Request-Id: 6105444687777951921, user id 5663204945247157712`, nil},
		{"card visa 19 after an id and a card word", "order id 12, card 4305457875255060487", []string{"CREDIT_CARD:4305457875255060487"}},
		{"card after a word ending in id", "paid 4305457875255060487 via Apple Pay; android 4305457875255060487", []string{"CREDIT_CARD:4305457875255060487", "CREDIT_CARD:4305457875255060487"}},
		{"not card: brand length", "4111 1111 1111 111", nil},
		{"not card: mixed separators", "4111-1111 1111-1111", nil},
		{"not card: decimal", "pi 3.4111111111111111", nil},
		{"not card: budget line", "line 4100-2200-3300-4400", nil},
		{"not card: uuid tail", "id 92821144-1ec7-4071-80c8-411111111111", nil},

		// SSNs.
		{"ssn", "SSN: 856-70-3422", []string{"US_SSN:856-70-3422"}},
		{"ssn spaces", "no. 224 09 6934", []string{"US_SSN:224 09 6934"}},
		{"ssn hash", "SSN#362-68-1645", []string{"US_SSN:362-68-1645"}},
		{"ssn plain with context", "Tax ID (SSN): 328959257", []string{"US_SSN:328959257"}},
		{"ssn plain social", "my social security number 411371491", []string{"US_SSN:411371491"}},
		{"ssn plain after a snake_case key", "applicant_ssn=328959257", []string{"US_SSN:328959257"}},
		{"not ssn: a placeholder is no context", "<US_SSN_1> 328959257 <US_SSN_h:0a1b2c3d> 411371491", nil},
		{"ssn en dash", "SSN 123\u201345\u20136789", []string{"US_SSN:123\u201345\u20136789"}},
		{"ssn nbsp", "SSN: 224\u00a009\u00a06934", []string{"US_SSN:224\u00a009\u00a06934"}},
		{"not ssn: slashes", "SSN 123/45/6789", nil},
		{"not ssn: plain no context", "value 328959257", nil},
		{"not ssn: area 000", "SSN 000-22-5169", nil},
		{"not ssn: area 666", "SSN 666-90-9894", nil},
		{"not ssn: area 9xx", "SSN 987-65-4321", nil},
		{"not ssn: group 00", "SSN 841-00-0087", nil},
		{"not ssn: serial 0000", "SSN 491-09-0000", nil},
		{"not ssn: zip", "ZIP 94103-1234", nil},
		{"not ssn: routing", "routing number 021000021", nil},
		{"not ssn: mixed", "123-45.6789", nil},

		// IBANs.
		{"iban grouped", "IBAN: DE55 4011 2806 7852 2831 26", []string{"IBAN_CODE:DE55 4011 2806 7852 2831 26"}},
		{"iban compact", "GB76EINJ21735363548400.", []string{"IBAN_CODE:GB76EINJ21735363548400"}},
		{"iban letters group", "LU21 578X BI9F KAIY 1IYQ", []string{"IBAN_CODE:LU21 578X BI9F KAIY 1IYQ"}},
		{"iban short last", "NO43 6295 8641 271", []string{"IBAN_CODE:NO43 6295 8641 271"}},
		{"iban nbsp", "IBAN\u00a0: FR76\u00a03000\u00a06000\u00a00112\u00a03456\u00a07890\u00a0189", []string{"IBAN_CODE:FR76\u00a03000\u00a06000\u00a00112\u00a03456\u00a07890\u00a0189"}},
		{"iban narrow nbsp", "DE89\u202f3704\u202f0044\u202f0532\u202f0130\u202f00", []string{"IBAN_CODE:DE89\u202f3704\u202f0044\u202f0532\u202f0130\u202f00"}},
		{"iban lower", "iban: de89370400440532013000", []string{"IBAN_CODE:de89370400440532013000"}},
		{"iban lower grouped", "Bank: gb82 west 1234 5698 7654 32", []string{"IBAN_CODE:gb82 west 1234 5698 7654 32"}},
		{"iban dashes", "DE89-3704-0044-0532-0130-00.", []string{"IBAN_CODE:DE89-3704-0044-0532-0130-00"}},
		{"iban lower dashes", "IBAN fr76-3000-6000-0112-3456-7890-189", []string{"IBAN_CODE:fr76-3000-6000-0112-3456-7890-189"}},
		{"not iban: lower without context", "token de89370400440532013000 in the log", nil},
		{"not iban: mixed case", "iban: De89370400440532013000 and DE89 3704 0044 0532 0130 00x", nil},
		{"not iban: dashes mod97", "IBAN DE63-4502-0457-0766-2360-00", nil},
		{"not iban: mod97", "IBAN: DE63 4502 0457 0766 2360 00", nil},
		{"not iban: length", "DE2588815899862591900 and GB87NWBK706877703", nil},
		{"not iban: no card inside", "AT27 4732 8219 2569 6250", nil},

		// IPs.
		{"ipv4", "server at 10.20.30.40 down", []string{"IP_ADDRESS:10.20.30.40"}},
		{"ipv4 port", "http://172.16.5.4:8080/health", []string{"IP_ADDRESS:172.16.5.4"}},
		{"ipv4 cidr", "allow 10.0.0.0/8;", []string{"IP_ADDRESS:10.0.0.0"}},
		{"ipv4 after at", "ssh deploy@192.168.1.23", []string{"IP_ADDRESS:192.168.1.23"}},
		{"ipv6", "addr 2001:db8::1 ok", []string{"IP_ADDRESS:2001:db8::1"}},
		{"ipv6 full", "2001:0db8:85a3:0000:0000:8a2e:0370:7334", []string{"IP_ADDRESS:2001:0db8:85a3:0000:0000:8a2e:0370:7334"}},
		{"ipv6 link local", "fe80::1ff:fe23:4567:890a prefixlen", []string{"IP_ADDRESS:fe80::1ff:fe23:4567:890a"}},
		{"ipv6 bracket", "[2001:db8:4006:812::200e]:443", []string{"IP_ADDRESS:2001:db8:4006:812::200e"}},
		{"ipv6 mapped", "from ::ffff:192.0.2.128 lb", []string{"IP_ADDRESS:::ffff:192.0.2.128"}},
		{"ipv6 prefix", "route 2400:cb00::/32;", []string{"IP_ADDRESS:2400:cb00::"}},
		{"ipv6 loopback", "Bind to ::1 only", []string{"IP_ADDRESS:::1"}},
		{"not ip: version", "Upgrade to version 1.2.3.4 now", nil},
		{"not ip: v prefix", "Firmware v10.0.0.1 fixes it", nil},
		{"not ip: version names", `[assembly: AssemblyVersion("1.0.0.0")] appVersion: 10.20.30.40 android:versionName="1.2.0.5" __version__ = "2.1.0.3" os_version_code: 4.1.0.2`, nil},
		{"ip after a name with version inside a word", `conversion_host: 10.20.30.40, subversion 10.1.2.3, versions_ip=192.168.1.9`,
			[]string{"IP_ADDRESS:10.20.30.40", "IP_ADDRESS:10.1.2.3", "IP_ADDRESS:192.168.1.9"}},
		{"not ip: release", "Release 2.4.1.0 ships", nil},
		{"not ip: section", "See section 3.2.1.4 of it.", nil},
		{"not ip: oid", "OID 1.3.6.1.4.1.311", nil},
		{"not ip: octet", "999.1.1.1 and 256.300.1.1", nil},
		{"not ip: code", "std::vector<int> a; Foo::Bar::baz; a[1:2:3]; x ::= y; a::b; 1::3", nil},
		{"not ip: time", "01:02:03.45 and 12:30:45 and 01:23:45:12", nil},

		// MACs.
		{"mac colon", "ether 5c:d9:db:76:40:8e brd", []string{"MAC_ADDRESS:5c:d9:db:76:40:8e"}},
		{"mac letters only", "brd ff:ff:ff:ff:ff:ff", []string{"MAC_ADDRESS:ff:ff:ff:ff:ff:ff"}},
		{"mac dash", "E2-ED-DD-05-58-B5,", []string{"MAC_ADDRESS:E2-ED-DD-05-58-B5"}},
		{"mac cisco", "b898.5dd3.ec34 dynamic", []string{"MAC_ADDRESS:b898.5dd3.ec34"}},
		{"not mac: seven groups", "00:11:22:33:44:55:66", nil},
		{"not mac: hexdump", "00 1a 2b 3c 4d 5e", nil},
		{"not mac: cisco digits", "1234.5678.9012", nil},

		// Bitcoin.
		{"btc p2pkh", "to 1B5cijhQSXMXT6L9XYUNf2oE642JbFkRnd", []string{"CRYPTO:1B5cijhQSXMXT6L9XYUNf2oE642JbFkRnd"}},
		{"btc p2sh", "3HNfSmSj3HyvQFLTwdnHDLLaNpUpSw4QNB.", []string{"CRYPTO:3HNfSmSj3HyvQFLTwdnHDLLaNpUpSw4QNB"}},
		{"btc bech32", "bc1qm4k676xpytua6vf7e0lvapamzag8q3faanfq6n", []string{"CRYPTO:bc1qm4k676xpytua6vf7e0lvapamzag8q3faanfq6n"}},
		{"btc bech32 upper", "BITCOIN:BC1QYE7QKWPCWQQWCG3DNDYTM3FSHAQFT2LWFNWF3Y", []string{"CRYPTO:BC1QYE7QKWPCWQQWCG3DNDYTM3FSHAQFT2LWFNWF3Y"}},
		{"btc taproot", "bc1pat3ef9gtemmqcmq5d53c5hxntrv82nvr5d2z2e2ydyz40u2vdgnqj7fh93", []string{"CRYPTO:bc1pat3ef9gtemmqcmq5d53c5hxntrv82nvr5d2z2e2ydyz40u2vdgnqj7fh93"}},
		{"not btc: checksum", "17fHjLr1zszKckUCHZj42cX8bKLu6jtdFr bc1qd0h6ncnfuj06hn78whrw5pqlnym78ccmu66haj", nil},
		{"not btc: vin", "VIN 1HGCM82633A004352 and 1Z999AA10123456784", nil},

		// Secrets.
		{"openai", "KEY=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", []string{"SECRET: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"}},
		{"openai proj", `"sk-proj-VdqX-z19g_jo1zkwxYz9vfXVqGTfAV743AWyW3"`, []string{"SECRET:sk-proj-VdqX-z19g_jo1zkwxYz9vfXVqGTfAV743AWyW3"}},
		{"anthropic", "sk-ant-api03-qZmwMN2calIUYIICzn6plSitzRFmJKxBz9B_q-lc2L AA", []string{"SECRET:sk-ant-api03-qZmwMN2calIUYIICzn6plSitzRFmJKxBz9B_q-lc2L"}},
		{"aws", "id = AKIAYYCSHKQINVNU5XDG", []string{"SECRET:AKIAYYCSHKQINVNU5XDG"}},
		{"aws docs example", "AKIAIOSFODNN7EXAMPLE", []string{"SECRET:AKIAIOSFODNN7EXAMPLE"}},
		{"github", "ghp_kDsbPU3b2XGuziLcO7LZQAeirJjXufYdbOs7 x", []string{"SECRET:ghp_kDsbPU3b2XGuziLcO7LZQAeirJjXufYdbOs7"}},
		{"github pat", "github_pat_11ABCDEFG0123456789_abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTU", []string{"SECRET:github_pat_11ABCDEFG0123456789_abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTU"}},
		{"gitlab", "glpat-xeT2pIAkeBRnYk3zv-k-", []string{"SECRET:glpat-xeT2pIAkeBRnYk3zv-k-"}},
		{"slack app", "xapp-1-A0123456789-1234567890123-abcdef0123456789", []string{"SECRET:xapp-1-A0123456789-1234567890123-abcdef0123456789"}},
		{"slack", "xoxb-030745385220-1277168338840-gmczrsaSdYG9kjeqjpTxTa4Q", []string{"SECRET:xoxb-030745385220-1277168338840-gmczrsaSdYG9kjeqjpTxTa4Q"}},
		{"google", "key=AIzaQzYuySYdestHEPS7wkgO7ydpyBptW0Q9oya&x", []string{"SECRET:AIzaQzYuySYdestHEPS7wkgO7ydpyBptW0Q9oya"}},
		{"jwt", "Bearer eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U end",
			[]string{"SECRET:eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U"}},
		{"pem", "key:\n-----BEGIN RSA PRIVATE KEY-----\nMIIBOgIBAAJBAKj34GkxFhD9\nAbCd+/==\n-----END RSA PRIVATE KEY-----\nthanks",
			[]string{"SECRET:-----BEGIN RSA PRIVATE KEY-----\nMIIBOgIBAAJBAKj34GkxFhD9\nAbCd+/==\n-----END RSA PRIVATE KEY-----"}},
		{"pem quoted email", "> -----BEGIN PRIVATE KEY-----\n> MIIEvQIBADANBgkqhkiG9w0B\n> AbCd+/==\n> -----END PRIVATE KEY-----\n\nthanks",
			[]string{"SECRET:-----BEGIN PRIVATE KEY-----\n> MIIEvQIBADANBgkqhkiG9w0B\n> AbCd+/==\n> -----END PRIVATE KEY-----"}},
		{"pem in a comment, no END", "# -----BEGIN EC PRIVATE KEY-----\n# MHcCAQEEIIrYSSNQFaA2Hwf1\nx = 1",
			[]string{"SECRET:-----BEGIN EC PRIVATE KEY-----\n# MHcCAQEEIIrYSSNQFaA2Hwf1"}},
		{"pem lazy blockquote", "> -----BEGIN PRIVATE KEY-----\nMIIEvQIBADANBgkqhkiG9w0B\n-----END PRIVATE KEY-----\nok",
			[]string{"SECRET:-----BEGIN PRIVATE KEY-----\nMIIEvQIBADANBgkqhkiG9w0B\n-----END PRIVATE KEY-----"}},
		{"pem truncated", "-----BEGIN PRIVATE KEY-----\nMIIBOgIBAAJBAKj34GkxFhD9\n\nCan you check it?",
			[]string{"SECRET:-----BEGIN PRIVATE KEY-----\nMIIBOgIBAAJBAKj34GkxFhD9"}},
		{"pem json escaped", `{"private_key": "-----BEGIN PRIVATE KEY-----\nMIIEvQIBADANBgkqhkiG9w0B\nAbCd+/==\n-----END PRIVATE KEY-----\n", "client_email": "svc@proj.iam.gserviceaccount.com"}`,
			[]string{`SECRET:-----BEGIN PRIVATE KEY-----\nMIIEvQIBADANBgkqhkiG9w0B\nAbCd+/==\n-----END PRIVATE KEY-----`, "EMAIL_ADDRESS:svc@proj.iam.gserviceaccount.com"}},
		{"pem json escaped crlf and slash", `"key": "-----BEGIN EC PRIVATE KEY-----\r\nMIIEvQIB\/ADANBgkq\r\n-----END EC PRIVATE KEY-----\r\n"`,
			[]string{`SECRET:-----BEGIN EC PRIVATE KEY-----\r\nMIIEvQIB\/ADANBgkq\r\n-----END EC PRIVATE KEY-----`}},
		{"pem json escaped twice", `"{\"k\": \"-----BEGIN PRIVATE KEY-----\\nMIIEvQIBADANBgkq\\n-----END PRIVATE KEY-----\\n\"}"`,
			[]string{`SECRET:-----BEGIN PRIVATE KEY-----\\nMIIEvQIBADANBgkq\\n-----END PRIVATE KEY-----`}},
		{"pem json truncated", `"-----BEGIN PRIVATE KEY-----\nMIIEvQIBADANBgkq\nAbCd", "x": 1`,
			[]string{`SECRET:-----BEGIN PRIVATE KEY-----\nMIIEvQIBADANBgkq\nAbCd`}},
		{"pem encrypted", "-----BEGIN RSA PRIVATE KEY-----\nProc-Type: 4,ENCRYPTED\nDEK-Info: AES-128-CBC,3F17F5316E2BAC89\n\nMIIEowIBAAKCAQEAu1SU1\n-----END RSA PRIVATE KEY-----\nok",
			[]string{"SECRET:-----BEGIN RSA PRIVATE KEY-----\nProc-Type: 4,ENCRYPTED\nDEK-Info: AES-128-CBC,3F17F5316E2BAC89\n\nMIIEowIBAAKCAQEAu1SU1\n-----END RSA PRIVATE KEY-----"}},
		{"pem encrypted json", `"-----BEGIN RSA PRIVATE KEY-----\nProc-Type: 4,ENCRYPTED\nDEK-Info: DES-EDE3-CBC,3F17F5316E2BAC89\n\nMIIEowIBAAKCAQEAu1SU1\n-----END RSA PRIVATE KEY-----"`,
			[]string{`SECRET:-----BEGIN RSA PRIVATE KEY-----\nProc-Type: 4,ENCRYPTED\nDEK-Info: DES-EDE3-CBC,3F17F5316E2BAC89\n\nMIIEowIBAAKCAQEAu1SU1\n-----END RSA PRIVATE KEY-----`}},
		{"pgp", "-----BEGIN PGP PRIVATE KEY BLOCK-----\n\nlQOYBF0kRrMBCADmR5uE0n6d\n=Xk2Q\n-----END PGP PRIVATE KEY BLOCK-----",
			[]string{"SECRET:-----BEGIN PGP PRIVATE KEY BLOCK-----\n\nlQOYBF0kRrMBCADmR5uE0n6d\n=Xk2Q\n-----END PGP PRIVATE KEY BLOCK-----"}},
		{"pgp headers", "-----BEGIN PGP PRIVATE KEY BLOCK-----\nVersion: GnuPG v2\nComment: Alice's key, https://keys.example.com/a\n\nlQOYBF0kRrMBCADmR5uE0n6d\n-----END PGP PRIVATE KEY BLOCK-----",
			[]string{"SECRET:-----BEGIN PGP PRIVATE KEY BLOCK-----\nVersion: GnuPG v2\nComment: Alice's key, https://keys.example.com/a\n\nlQOYBF0kRrMBCADmR5uE0n6d\n-----END PGP PRIVATE KEY BLOCK-----"}},
		{"pem one blank line only", "-----BEGIN PGP PRIVATE KEY BLOCK-----\n\nlQOYBF0kRrMBCADmR5uE0n6d\n\nWhat is this file?",
			[]string{"SECRET:-----BEGIN PGP PRIVATE KEY BLOCK-----\n\nlQOYBF0kRrMBCADmR5uE0n6d"}},
		{"pem no blank line without headers", "-----BEGIN PRIVATE KEY-----\n\nWhat goes here?",
			[]string{"SECRET:-----BEGIN PRIVATE KEY-----"}},
		{"aws secret", "aws_secret_access_key = wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY\n", []string{"SECRET:wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"}},
		{"aws secret env", "AWS_SECRET_ACCESS_KEY=I4pShZFC8ZrXbeg+fT3pG/h8msMlc/T1ah9sdbEl aws s3 ls", []string{"SECRET:I4pShZFC8ZrXbeg+fT3pG/h8msMlc/T1ah9sdbEl"}},
		{"aws secret json", `{"SecretAccessKey": "7oX8nrEHAluvtdgDW1/In81LJK6yc/jecsblnAk2"}`, []string{"SECRET:7oX8nrEHAluvtdgDW1/In81LJK6yc/jecsblnAk2"}},
		// The key's other names: the JS SDK's, shell and Terraform variables.
		{"aws secret js sdk", `secretAccessKey: 'wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY'`, []string{"SECRET:wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"}},
		{"aws secret short name", `aws_secret = "I4pShZFC8ZrXbeg+fT3pG/h8msMlc/T1ah9sdbEl"`, []string{"SECRET:I4pShZFC8ZrXbeg+fT3pG/h8msMlc/T1ah9sdbEl"}},
		{"aws secret key env", "export AWS_SECRET_KEY=7oX8nrEHAluvtdgDW1/In81LJK6yc/jecsblnAk2", []string{"SECRET:7oX8nrEHAluvtdgDW1/In81LJK6yc/jecsblnAk2"}},
		{"aws secret terraform", `  secret_key = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"`, []string{"SECRET:wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"}},
		{"aws secret cli", "aws configure set aws_secret_access_key 9sHk2vQ+LmT0pWz7Rx4bNcY1eFgJ8aUoDi3KqVs5 --profile prod",
			[]string{"SECRET:9sHk2vQ+LmT0pWz7Rx4bNcY1eFgJ8aUoDi3KqVs5"}},
		{"aws secret powershell", "Set-AWSCredential -AccessKey AKIAYYCSHKQINVNU5XDG -SecretAccessKey 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",
			[]string{"SECRET:AKIAYYCSHKQINVNU5XDG", "SECRET: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"}},
		{"aws secret after its id", `new BasicAWSCredentials("AKIAYYCSHKQINVNU5XDG", "7oX8nrEHAluvtdgDW1/In81LJK6yc/jecsblnAk2")`,
			[]string{"SECRET:AKIAYYCSHKQINVNU5XDG", "SECRET: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"}},
		{"aws secret after its id, system properties", "java -Daws.accessKeyId=AKIAYYCSHKQINVNU5XDG -Daws.secretKey=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 -jar app.jar",
			[]string{"SECRET:AKIAYYCSHKQINVNU5XDG", "SECRET:7oX8nrEHAluvtdgDW1/In81LJK6yc/jecsblnAk2"}},
		{"aws secret after its id, values between", "AKIAYYCSHKQINVNU5XDG from 10.0.0.1 by bob@example.com: 7oX8nrEHAluvtdgDW1/In81LJK6yc/jecsblnAk2",
			[]string{"SECRET:AKIAYYCSHKQINVNU5XDG", "IP_ADDRESS:10.0.0.1", "EMAIL_ADDRESS:bob@example.com", "SECRET:7oX8nrEHAluvtdgDW1/In81LJK6yc/jecsblnAk2"}},
		{"not aws secret: commit sha after an id", "AKIAYYCSHKQINVNU5XDG rotated in a94a8fe5ccb19ba61c4c0873d7e5e17d8a9c0d22", []string{"SECRET:AKIAYYCSHKQINVNU5XDG"}},
		{"not aws secret: short name, no separator", "secret_key wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY", nil},
		{"not aws secret: other names", `secret_sauce = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY" key_secretary: x`, nil},
		{"slack webhook", "POST https://hooks.slack.com/services/T04QX7M2LBN/B06E1R9KZ3P/f4StfxDPqJ2mK9rLx0aBcDeF now",
			[]string{"SECRET:https://hooks.slack.com/services/T04QX7M2LBN/B06E1R9KZ3P/f4StfxDPqJ2mK9rLx0aBcDeF"}},
		{"basic auth header", `curl -H "Authorization: Basic YWRtaW46czNjcjN0UGFzcw==" https://api.example.com`, []string{"SECRET:YWRtaW46czNjcjN0UGFzcw=="}},
		{"basic auth in json", `{"Authorization": "Basic YWxhZGRpbjpvcGVuc2VzYW1l"}`, []string{"SECRET:YWxhZGRpbjpvcGVuc2VzYW1l"}},
		{"not basic auth: challenge, placeholder, no password", `WWW-Authenticate: Basic realm="api" Authorization: Basic <base64(user:pass)> Authorization: Basic dXNlcm5hbWU=`, nil},
		{"curl user", "curl -sS -u admin:Sup3rS3cret -H 'Accept: application/json' http://localhost:9200/", []string{"SECRET:admin:Sup3rS3cret"}},
		{"curl user continued line", "curl -X POST https://api.example.com/m \\\n  --user 'AC0123456789abcdef:9f8e7d6c5b4a3928'", []string{"SECRET:AC0123456789abcdef:9f8e7d6c5b4a3928"}},
		{"not curl user: variables, other tools", "curl -u \"$USER:$TOKEN\" https://x.example\ntar -u file:name\ndocker login -u me:x", nil},
		{"google oauth token", "Bearer ya29.a0AfH6SMBx3kQ9vZ-_pLmN2wR7tY0uIoPq1, ok", []string{"SECRET:ya29.a0AfH6SMBx3kQ9vZ-_pLmN2wR7tY0uIoPq1"}},
		{"google client secret", `"client_secret": "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"`, []string{"SECRET: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"}},
		{"not secret: aws secret without its name", "checksum wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY", nil},
		{"not secret: aws secret too long", "aws_secret_access_key = wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEYX", nil},
		{"not secret: other slack hooks", "https://hooks.slack.com/commands/T04QX7M2LBN/B06E1R9KZ3P/f4StfxDPqJ2mK9rLx0aBcDeF https://hooks.slack.com/services/T00000000/B00000000/XXXXXXXXXXXXXXXXXXXXXXXX", nil},
		{"not secret: short google", "ya29.short GOCSPX-short", nil},
		{"not ip: user agent", "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Safari/537.36", nil},
		{"ip in a url path", "curl http://10.0.0.1/metrics", []string{"IP_ADDRESS:10.0.0.1"}},
		{"gitlab tokens", "runner glrt-2CR8_eVxiioB1QmzPZwa and deploy gldt-Fy7Eze3Kr3xk8mzMsSGm, trigger glptt-0b4a1c2d3e4f5a6b7c8d9e0f1a2b3c4d5e6f7a8b.",
			[]string{"SECRET:glrt-2CR8_eVxiioB1QmzPZwa", "SECRET:gldt-Fy7Eze3Kr3xk8mzMsSGm", "SECRET:glptt-0b4a1c2d3e4f5a6b7c8d9e0f1a2b3c4d5e6f7a8b"}},
		{"gitlab token, new form", "token glpat-Xk2Yq9Zp3Lm8Nv4Rt6Wb.01.120gb3x8z end", []string{"SECRET:glpat-Xk2Yq9Zp3Lm8Nv4Rt6Wb.01.120gb3x8z"}},
		{"email on newer and punycode tlds", "dev@company.technology, ivan@xn--e1afmkfd.xn--p1ai",
			[]string{"EMAIL_ADDRESS:dev@company.technology", "EMAIL_ADDRESS:ivan@xn--e1afmkfd.xn--p1ai"}},
		{"not email: scp address", "git clone git@github.com:org/repo.git && scp deploy@build.example.com:/var/app.tgz .", nil},
		{"email before a colon", "write to jane@example.com: she answers", []string{"EMAIL_ADDRESS:jane@example.com"}},
		{"not secret: descriptions", "keys start with sk- or ghp_ or AKIA, glpat- and xoxb-<team>; AIza and sk-...Xy7Q; scikit sk-learn", nil},
		{"not secret: public pem", "-----BEGIN PUBLIC KEY-----\nMIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8A\n-----END PUBLIC KEY-----", nil},
		{"not secret: publishable", "pk_test_TYooMQauvdEDq54NiTphI7jx", nil},
		{"not secret: identifiers", "ghp_token_name sk_live hf_hub_download AIzaShort", nil},

		// Hard negatives of every kind.
		{"uuid", "request_id=c3f5b48f-d7b0-43a1-83d3-27a75240160c GUID {D81B94B1-DD40-4C0D-BB43-773B9C79FB51}", nil},
		{"hashes", "sha256:0d17b565c37bcbd895e9d92315a05c1c3c9a29f762b011a10c54a66cd53c9b31 md5 d41d8cd98f00b204e9800998ecf8427e", nil},
		{"code", "for (int i = 0; i < 1000000; i++) { sum += i * 31; } x = 0x80070005; printf(\"%02x:%02x\")", nil},
		{"versions", "go 1.21.5, node v20.10.0, Chrome/120.0.6099.109, build 10.0.19045.3693", nil},
		{"tracking", "FedEx tracking 7489 2637 4821; USPS 9400 1000 0000 0000 0000 00; S/N 8842-1193-0075", nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := found(tt.text, p.Find(nil, []byte(tt.text)))
			want := tt.want
			if want == nil {
				want = []string{}
			}
			if !slices.Equal(got, want) {
				t.Errorf("Find(%q)\n got %q\nwant %q", tt.text, got, want)
			}
		})
	}
}

func TestPIIOptions(t *testing.T) {
	tests := []struct {
		name    string
		opts    PIIOptions
		wantErr string
	}{
		{"zero", PIIOptions{}, ""},
		{"entities", PIIOptions{Entities: []string{EntityEmail, EntitySSN}}, ""},
		{"unknown entity", PIIOptions{Entities: []string{"PERSON"}}, `"PERSON"`},
		{"unknown override", PIIOptions{Overrides: []PIIOverride{{Entity: "NRP", Action: ActionMask}}}, `"NRP"`},
		{"bad action", PIIOptions{Prompt: ActionBlock + 1}, "action"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := NewPII(tt.opts)
			switch {
			case tt.wantErr == "" && err != nil:
				t.Fatalf("NewPII: %v", err)
			case tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)):
				t.Fatalf("NewPII error = %v, want one containing %s", err, tt.wantErr)
			}
		})
	}
}

func TestPIIEntitiesFilter(t *testing.T) {
	text := []byte("mail bob@example.com, card 4111 1111 1111 1111, call (415) 555-0132")
	p := mustPII(t, PIIOptions{Entities: []string{EntityCreditCard}})
	got := found(string(text), p.Find(nil, text))
	if want := []string{"CREDIT_CARD:4111 1111 1111 1111"}; !slices.Equal(got, want) {
		t.Fatalf("got %q, want %q", got, want)
	}
	if a := p.Action(Prompt, EntityEmail); a != ActionOff {
		t.Fatalf("Action of an entity not scanned = %v, want ActionOff", a)
	}
}

// TestPIIEntitiesEmptyMeansAll: "entities: []" in the config, as llmgate.example.yaml writes
// it, decodes to an empty slice, which scans every type as nil does (it scanned none).
func TestPIIEntitiesEmptyMeansAll(t *testing.T) {
	text := []byte("mail bob@example.com, card 4111 1111 1111 1111")
	p := mustPII(t, PIIOptions{Entities: []string{}, Prompt: ActionRedact})
	got := found(string(text), p.Find(nil, text))
	if want := []string{"EMAIL_ADDRESS:bob@example.com", "CREDIT_CARD:4111 1111 1111 1111"}; !slices.Equal(got, want) {
		t.Fatalf("got %q, want %q", got, want)
	}
}

func TestPIIFindAppends(t *testing.T) {
	p := mustPII(t, PIIOptions{})
	dst := []Finding{{Entity: "X", Start: 1, End: 2}}
	dst = p.Find(dst, []byte("a@example.com"))
	if len(dst) != 2 || dst[0].Entity != "X" || dst[1].Entity != EntityEmail {
		t.Fatalf("Find did not append: %+v", dst)
	}
}

func TestPIIFindNoAllocs(t *testing.T) {
	p := mustPII(t, PIIOptions{})
	clean := []byte(benchText(4096, 0))
	dirty := []byte(benchText(4096, 5))
	dst := make([]Finding, 0, 16)
	for name, text := range map[string][]byte{"clean": clean, "with entities": dirty} {
		if n := testing.AllocsPerRun(100, func() { dst = p.Find(dst[:0], text) }); n != 0 {
			t.Errorf("Find on %s text: %v allocs, want 0", name, n)
		}
	}
}

func TestEntitySet(t *testing.T) {
	s := EntitySet(1<<eEmail | 1<<eSSN)
	if !s.Has(EntityEmail) || !s.Has(EntitySSN) || s.Has(EntityPhone) || s.Has("nope") || s.Len() != 2 {
		t.Fatalf("set %b: wrong membership", s)
	}
	if got := string(s.AppendNames(nil, ',')); got != "EMAIL_ADDRESS,US_SSN" {
		t.Fatalf("AppendNames = %q", got)
	}
	if got := len(PIIEntities()); got != int(numEntities) {
		t.Fatalf("PIIEntities has %d names", got)
	}
}

// TestIPv6Shape checks that ipv6Parse finds no address wherever ipv6Shape rules one out, on
// random runs of hex digits, colons, dots and a few other bytes.
func TestIPv6Shape(t *testing.T) {
	p := mustPII(t, PIIOptions{})
	const alphabet = "0123456789abcdefABCDEF::::....g x]"
	r := rand.New(rand.NewPCG(3, 4))
	for n := range 200000 {
		b := make([]byte, 1+r.IntN(40))
		for k := range b {
			b[k] = alphabet[r.IntN(len(alphabet))]
		}
		if n%2 == 0 { // address-shaped: hex groups joined by colons, a "::", a dotted-quad tail
			b = b[:min(len(b), r.IntN(3))]
			for g := r.IntN(9); g >= 0; g-- {
				for h := r.IntN(4); h >= 0; h-- {
					b = append(b, "0123456789abcdef"[r.IntN(16)])
				}
				if g > 0 {
					b = append(b, "::::::::::::::x:"[r.IntN(16)])
				}
			}
			if r.IntN(2) == 0 {
				b = append(b, ":192.0.2.1"...)
			}
			b = append(b, " x"[r.IntN(2)])
		}
		for i := range b {
			if ipv6Shape(b, i) {
				continue
			}
			s := scan{p: p, t: b}
			if end, ok := s.ipv6Parse(i); ok || len(s.dst) > 0 {
				t.Fatalf("ipv6Shape(%q, %d) is false, but ipv6Parse gives %d, %v, %v", b, i, end, ok, s.dst)
			}
		}
	}
}

// TestIBANMod97 checks ibanMod97 against the remainder of the whole number, computed with
// math/big, on random strings of upper-case letters and digits of up to 40 characters.
func TestIBANMod97(t *testing.T) {
	r := rand.New(rand.NewPCG(9, 10))
	const chars = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ"
	for range 100000 {
		s := make([]byte, 5+r.IntN(36))
		for k := range s {
			s[k] = chars[r.IntN(len(chars))]
		}
		var digits []byte
		for _, c := range append(append([]byte(nil), s[4:]...), s[:4]...) {
			if isDigit(c) {
				digits = append(digits, c)
			} else {
				digits = strconv.AppendInt(digits, int64(c-'A')+10, 10)
			}
		}
		n, _ := new(big.Int).SetString(string(digits), 10)
		want := new(big.Int).Mod(n, big.NewInt(97)).Int64() == 1
		if got := ibanMod97(s); got != want {
			t.Fatalf("ibanMod97(%q) = %v, want %v", s, got, want)
		}
	}
}
