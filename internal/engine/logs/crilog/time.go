package crilog

import (
	"syscall"
	"unsafe"
)

// Now returns the wall-clock time (CLOCK_REALTIME) as seconds and
// nanoseconds since the Unix epoch. It is a raw clock_gettime: package time
// is what the monitor must not link.
func Now() (sec int64, nsec int32) {
	var ts syscall.Timespec
	syscall.RawSyscall(syscall.SYS_CLOCK_GETTIME, 0 /* CLOCK_REALTIME */, uintptr(unsafe.Pointer(&ts)), 0)
	return ts.Sec, int32(ts.Nsec)
}

// AppendTimestamp appends the UTC time sec.nsec as time.RFC3339Nano formats
// it ("2006-01-02T15:04:05.999999999Z": trailing zeros of the fraction
// dropped, no fraction when it is zero). Years must be in 0…9999.
func AppendTimestamp(b []byte, sec int64, nsec int32) []byte {
	days, rem := sec/86400, sec%86400
	if rem < 0 {
		rem += 86400
		days--
	}
	y, m, d := civil(days)
	b = appendPad(b, int(y), 4)
	b = append(b, '-')
	b = appendPad(b, m, 2)
	b = append(b, '-')
	b = appendPad(b, d, 2)
	b = append(b, 'T')
	b = appendPad(b, int(rem/3600), 2)
	b = append(b, ':')
	b = appendPad(b, int(rem/60%60), 2)
	b = append(b, ':')
	b = appendPad(b, int(rem%60), 2)
	if nsec > 0 {
		var frac [9]byte
		v := nsec
		for i := 8; i >= 0; i-- {
			frac[i] = byte('0' + v%10)
			v /= 10
		}
		end := 9
		for frac[end-1] == '0' {
			end--
		}
		b = append(b, '.')
		b = append(b, frac[:end]...)
	}
	return append(b, 'Z')
}

// civil converts days since 1970-01-01 to a proleptic Gregorian date
// (Howard Hinnant's days_from_civil, inverted).
func civil(days int64) (year int64, month, day int) {
	z := days + 719468
	era := z
	if era < 0 {
		era -= 146096
	}
	era /= 146097
	doe := z - era*146097                                  // [0, 146096]
	yoe := (doe - doe/1460 + doe/36524 - doe/146096) / 365 // [0, 399]
	doy := doe - (365*yoe + yoe/4 - yoe/100)               // [0, 365]
	mp := (5*doy + 2) / 153                                // [0, 11], March first
	day = int(doy - (153*mp+2)/5 + 1)
	if mp < 10 {
		month = int(mp + 3)
	} else {
		month = int(mp - 9)
	}
	year = yoe + era*400
	if month <= 2 {
		year++
	}
	return year, month, day
}

func appendPad(b []byte, v, width int) []byte {
	var d [20]byte
	i := len(d)
	for v >= 10 || width > 1 {
		i--
		d[i] = byte('0' + v%10)
		v /= 10
		width--
	}
	i--
	d[i] = byte('0' + v)
	return append(b, d[i:]...)
}

// Itoa is strconv.Itoa.
func Itoa(v int) string { return string(AppendInt(nil, int64(v))) }

// AppendInt is strconv.AppendInt(b, v, 10).
func AppendInt(b []byte, v int64) []byte {
	if v < 0 {
		b = append(b, '-')
		if v == -1<<63 {
			return append(b, "9223372036854775808"...)
		}
		v = -v
	}
	var d [20]byte
	i := len(d)
	for {
		i--
		d[i] = byte('0' + v%10)
		v /= 10
		if v == 0 {
			break
		}
	}
	return append(b, d[i:]...)
}
