package drift

import (
	"bytes"
	"strings"
	"testing"
	"unicode/utf8"
)

func TestDetectScript(t *testing.T) {
	for _, tc := range []struct {
		name, text string
		want       Script
	}{
		{"empty", "", ScriptNone},
		{"digits", "1234 + 5678 = ?", ScriptNone},
		{"english", "Summarise this article, please.", ScriptLatin},
		{"french accents", "Résumez cet été à Noël", ScriptLatin},
		{"vietnamese", "Tiếng Việt có dấu", ScriptLatin},
		{"russian", "Привет, как дела? Ответь по-русски.", ScriptCyrillic},
		{"mixed mostly russian", "Translate: Привет мир, как дела сегодня", ScriptCyrillic},
		{"greek", "Καλημέρα κόσμε", ScriptGreek},
		{"arabic", "مرحبا بالعالم", ScriptArabic},
		{"hebrew", "שלום עולם", ScriptHebrew},
		{"hindi", "नमस्ते दुनिया", ScriptDevanagari},
		{"thai", "สวัสดีชาวโลก", ScriptThai},
		{"chinese", "请把这篇文章翻译成英文。", ScriptHan},
		{"japanese", "この文章を英語に翻訳してください。", ScriptKana},
		{"korean", "이 글을 영어로 번역해 주세요", ScriptHangul},
		{"armenian", "Բարեւ աշխարհ", ScriptOther},
		{"invalid utf8", "\xff\xfe\xfd abc", ScriptLatin},
	} {
		if got := DetectScript([]byte(tc.text)); got != tc.want {
			t.Errorf("%s: got %s, want %s", tc.name, got, tc.want)
		}
	}
	// Only the first ScriptScanBytes count.
	long := strings.Repeat("a", ScriptScanBytes) + strings.Repeat("я", 5000)
	if got := DetectScript([]byte(long)); got != ScriptLatin {
		t.Errorf("scan limit: got %s", got)
	}
}

func TestRefusal(t *testing.T) {
	d := NewRefusalDetector(nil, 0)
	for _, tc := range []struct {
		text string
		want bool
	}{
		{"I can't help with that request.", true},
		{"I’m sorry, but I cannot provide that.", true},
		{"  I AM SORRY,   BUT that is not possible", true},
		{"As an AI language model, I don't have opinions.", true},
		{"Lo siento, pero no puedo ayudarte con eso.", true},
		{"Je ne peux pas répondre à cette question.", true},
		{"DÉSOLÉ, MAIS je ne peux pas.", true},
		{"Es tut mir leid, aber das kann ich nicht.", true},
		{"Desculpe, mas não posso ajudar.", true},
		{"Mi dispiace, ma non posso farlo.", true},
		{"Извините, но я не могу помочь.", true},
		{"抱歉，我无法回答这个问题。", true},
		{"申し訳ありませんが、お答えできません。", true},
		{"Sure! Here is the summary you asked for.", false},
		{"The capital of France is Paris.", false},
		{"My wifi can't connect, what now?", false},
		// Phrases end words too: these open benign answers.
		{"As an aid to memory, here is a table of the verbs.", false},
		{"Als Kind habe ich diese Geschichte geliebt.", false},
		{"Sorry, but it looks like you forgot a semicolon on line 3.", false},
		// An apology alone is no refusal, in any language: what follows it says.
		{"Es tut mir leid, dass du so einen Tag hattest. Hier sind ein paar Ideen:", false},
		{"Je suis désolé d'apprendre cela. Voici quelques conseils :", false},
		{"抱歉，我刚才的回答有误，正确答案是 42。", false},
		{"对不起，让你久等了！答案如下：", false},
		{"申し訳ありません、先ほどの回答に誤りがありました。正しくは42です。", false},
		{"申し訳ございません、お待たせしました。こちらが要約です。", false},
		{"抱歉，但我不能提供这些信息。", true},
		{"对不起，我无法帮助你。", true},
		{"申し訳ございませんが、その質問にはお答えできません。", true},
		{"Je suis désolé, je ne peux pas faire cela.", true},
		{"Eu estava como iam as coisas a perguntar.", false},
		{"As an AI-powered assistant, I cannot do that.", true},
		{"Sorry, but I won't write that.", true},
		{"Als KI kann ich das nicht.", true},
		{"i can't", true},
		// Japanese "cannot" alone opens benign answers; what is declined makes a refusal.
		{"Pythonでは文字列を直接変更できません。代わりに新しい文字列を作ります。", false},
		{"この操作は元に戻すことができません。実行前にバックアップしてください。", false},
		{"そのご依頼にはお応えできません。", true},
		{"その情報は提供できません。", true},
		{strings.Repeat("Here is a long answer. ", 20) + "I can't stress this enough.", false},
	} {
		if got := d.Match([]byte(tc.text)); got != tc.want {
			t.Errorf("%q: got %v", tc.text, got)
		}
	}
	custom := NewRefusalDetector([]string{"Computer says no"}, 64)
	if !custom.Match([]byte("Well... COMPUTER SAYS NO.")) || custom.Match([]byte("I can't")) {
		t.Error("custom list")
	}
}

func TestTextHelpersDoNotAllocate(t *testing.T) {
	d := NewRefusalDetector(nil, 0)
	text := []byte("Извините, но я не могу помочь с этим запросом, потому что это нарушает правила.")
	if n := testing.AllocsPerRun(100, func() { d.Match(text); DetectScript(text) }); n != 0 {
		t.Fatalf("allocates %v", n)
	}
}

func FuzzRefusalAndScript(f *testing.F) {
	f.Add([]byte("I’m sorry, but"))
	f.Add([]byte("Извините\xd0"))
	f.Add([]byte("\xe2\x80"))
	d := NewRefusalDetector(nil, 0)
	f.Fuzz(func(t *testing.T, text []byte) {
		folded := fold(nil, text)
		if len(folded) > len(text) {
			t.Fatalf("fold grew %d -> %d", len(text), len(folded))
		}
		if utf8.Valid(text) && !utf8.Valid(folded) {
			t.Fatalf("fold broke UTF-8: %q -> %q", text, folded)
		}
		if !bytes.Equal(fold(nil, folded), folded) {
			t.Fatalf("fold not idempotent on %q", text)
		}
		d.Match(text)
		if s := DetectScript(text); s >= numScript {
			t.Fatalf("script %d", s)
		}
	})
}
