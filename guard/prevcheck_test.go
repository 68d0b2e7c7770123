package guard

func init() { checkPlainPrev = true }
