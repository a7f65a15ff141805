package scaler

// packer is first-fit bin packing of pods onto workers of one shape in
// O(log n) per placement: a segment tree over the bins holds, per range,
// the most CPU and the most memory any one bin in it has left, so the
// first bin with room is found by descending from the root (a range whose
// maxima are too small holds no bin with room). Bins are the workers in
// flight, then new workers, opened in order; used is how many were used.
//
// Two maxima per range are necessary, not sufficient: a range may hold one
// bin with the CPU and another with the memory. The descent then visits
// both halves; each leaf it reaches answers exactly, so the result is
// always first-fit's.
type packer struct {
	shape Resources
	n     int     // leaves (a power of two)
	cpu   []int64 // tree, 1-based: node k's children are 2k and 2k+1
	mem   []int64
	used  int // bins used: the highest bin placed on, plus one
}

// newPacker starts with pre bins (the workers in flight, counted as used
// whether or not anything lands on them) and room for about hint more.
func newPacker(shape Resources, pre, hint int) *packer {
	p := &packer{shape: shape, used: pre}
	p.grow(max(pre+hint/4+1, 8))
	return p
}

// grow makes room for at least want bins, keeping what is placed.
func (p *packer) grow(want int) {
	n := 1
	for n < want {
		n *= 2
	}
	cpu, mem := make([]int64, 2*n), make([]int64, 2*n)
	for i := range n {
		if i < p.n {
			cpu[n+i], mem[n+i] = p.cpu[p.n+i], p.mem[p.n+i]
		} else {
			cpu[n+i], mem[n+i] = p.shape.MilliCPU, p.shape.Memory
		}
	}
	for k := n - 1; k >= 1; k-- {
		cpu[k], mem[k] = max(cpu[2*k], cpu[2*k+1]), max(mem[2*k], mem[2*k+1])
	}
	p.n, p.cpu, p.mem = n, cpu, mem
}

// first is the first bin with room for r, or -1.
func (p *packer) first(k int, r Resources) int {
	if p.cpu[k] < r.MilliCPU || p.mem[k] < r.Memory {
		return -1
	}
	if k >= p.n {
		return k - p.n
	}
	if i := p.first(2*k, r); i >= 0 {
		return i
	}
	return p.first(2*k+1, r)
}

// place puts count pods of requests r, one after another, each on the
// first bin with room; r must fit an empty bin. Runs of identical pods
// fill a bin at once: first-fit would put each of them on that bin until
// it is full, the bins before it having no room for any.
func (p *packer) place(r Resources, count int) {
	if !r.Fits(p.shape) {
		return // the caller judged it with Unfit; never grow for ever
	}
	for count > 0 {
		i := p.first(1, r)
		if i < 0 {
			p.grow(2 * p.n)
			continue
		}
		k := p.n + i
		fit := count
		if r.MilliCPU > 0 {
			fit = min(fit, int(p.cpu[k]/r.MilliCPU))
		}
		if r.Memory > 0 {
			fit = min(fit, int(p.mem[k]/r.Memory))
		}
		p.cpu[k] -= int64(fit) * r.MilliCPU
		p.mem[k] -= int64(fit) * r.Memory
		for k /= 2; k >= 1; k /= 2 {
			p.cpu[k], p.mem[k] = max(p.cpu[2*k], p.cpu[2*k+1]), max(p.mem[2*k], p.mem[2*k+1])
		}
		p.used = max(p.used, i+1)
		count -= fit
	}
}
