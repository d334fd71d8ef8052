//! Border following on a binary image (Suzuki & Abe, 1985), the algorithm behind OpenCV's
//! `findContours`. Every border is returned, outer borders and hole borders alike (what
//! `RETR_LIST` gives), as the list of its pixels; foreground is 8-connected.
//!
//! The contours come out in the reverse of the order the raster scan meets them, which is the
//! order OpenCV returns them in. Points on straight runs are kept (OpenCV's
//! `CHAIN_APPROX_SIMPLE` drops them), which changes nothing for the convex hull built from them.

/// A contour: the (x, y) pixel coordinates of one border.
pub type Contour = Vec<(i32, i32)>;

/// Neighbour offsets (dx, dy), clockwise on screen (y grows downwards), starting east.
const DIRS: [(i32, i32); 8] = [
    (1, 0),
    (1, 1),
    (0, 1),
    (-1, 1),
    (-1, 0),
    (-1, -1),
    (0, -1),
    (1, -1),
];

fn dir_of(dx: i32, dy: i32) -> usize {
    DIRS.iter()
        .position(|d| *d == (dx, dy))
        .expect("neighbour offset")
}

/// Finds every border of the non-zero pixels of `mask` (`width * height`, row-major).
pub fn find_contours(mask: &[u8], width: usize, height: usize) -> Vec<Contour> {
    // A one-pixel frame of zeros around the image, as OpenCV adds.
    let (pw, ph) = (width + 2, height + 2);
    let mut f = vec![0i32; pw * ph];
    for y in 0..height {
        for x in 0..width {
            if mask[y * width + x] != 0 {
                f[(y + 1) * pw + x + 1] = 1;
            }
        }
    }
    let at = |x: i32, y: i32| (y as usize) * pw + x as usize;
    let mut contours = Vec::new();
    let mut nbd: i32 = 1;
    for y in 1..(ph as i32 - 1) {
        for x in 1..(pw as i32 - 1) {
            let v = f[at(x, y)];
            if v == 0 {
                continue;
            }
            // Where the border starts from: the zero pixel west (outer) or east (hole).
            let from = if v == 1 && f[at(x - 1, y)] == 0 {
                (x - 1, y)
            } else if v >= 1 && f[at(x + 1, y)] == 0 {
                (x + 1, y)
            } else {
                continue;
            };
            nbd += 1;
            contours.push(follow(&mut f, pw, (x, y), from, nbd));
        }
    }
    contours.reverse();
    contours
}

/// Follows one border from `start`, entered from the zero pixel `from`, labelling it `nbd`.
/// Returns its pixels, in image coordinates (the frame removed).
fn follow(f: &mut [i32], pw: usize, start: (i32, i32), from: (i32, i32), nbd: i32) -> Contour {
    let at = |p: (i32, i32)| (p.1 as usize) * pw + p.0 as usize;
    let step = |p: (i32, i32), d: usize| (p.0 + DIRS[d].0, p.1 + DIRS[d].1);
    let unpad = |p: (i32, i32)| (p.0 - 1, p.1 - 1);

    // (3.1) Clockwise around the start from `from`, the first non-zero pixel.
    let d0 = dir_of(from.0 - start.0, from.1 - start.1);
    let first = (0..8)
        .map(|k| (d0 + k) % 8)
        .find(|d| f[at(step(start, *d))] != 0);
    let Some(d1) = first else {
        // An isolated pixel.
        f[at(start)] = -nbd;
        return vec![unpad(start)];
    };
    let p1 = step(start, d1);
    let mut contour = Vec::new();
    let mut prev = p1;
    let mut cur = start;
    loop {
        contour.push(unpad(cur));
        // (3.3) Counter-clockwise around `cur`, starting after `prev`.
        let dp = dir_of(prev.0 - cur.0, prev.1 - cur.1);
        let mut east_zero_examined = false;
        let mut next = cur;
        for k in 1..=8 {
            let d = (dp + 8 - k) % 8;
            let q = step(cur, d);
            if f[at(q)] != 0 {
                next = q;
                break;
            }
            if d == 0 {
                east_zero_examined = true;
            }
        }
        // (3.4) Label the pixel: negative where the border has background to its east.
        if east_zero_examined {
            f[at(cur)] = -nbd;
        } else if f[at(cur)] == 1 {
            f[at(cur)] = nbd;
        }
        // (3.5) Back at the start, about to repeat the first move: done.
        if next == start && cur == p1 {
            break;
        }
        prev = cur;
        cur = next;
    }
    contour
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mask(rows: &[&str]) -> (Vec<u8>, usize, usize) {
        let h = rows.len();
        let w = rows[0].len();
        let data = rows
            .iter()
            .flat_map(|r| r.bytes().map(|b| u8::from(b == b'#')))
            .collect();
        (data, w, h)
    }

    fn sorted(mut c: Contour) -> Contour {
        c.sort();
        c.dedup();
        c
    }

    #[test]
    fn rectangle_border() {
        let (m, w, h) = mask(&["......", ".####.", ".####.", ".####.", "......"]);
        let cs = find_contours(&m, w, h);
        assert_eq!(cs.len(), 1);
        let expected: Contour = vec![
            (1, 1),
            (1, 2),
            (1, 3),
            (2, 1),
            (2, 3),
            (3, 1),
            (3, 3),
            (4, 1),
            (4, 2),
            (4, 3),
        ];
        assert_eq!(sorted(cs[0].clone()), expected);
    }

    #[test]
    fn blobs_holes_and_order() {
        // Same layout as a cv2.findContours(RETR_LIST) check: output is bottom-up, and the
        // ring yields an outer border and a hole border.
        let (m, w, h) = mask(&[
            "##.......",
            "##..####.",
            "....#..#.",
            "....####.",
            ".........",
            ".#.....#.",
        ]);
        let cs = find_contours(&m, w, h);
        assert_eq!(cs.len(), 5);
        assert_eq!(cs[0], vec![(7, 5)]);
        assert_eq!(cs[1], vec![(1, 5)]);
        // Hole border: the ring's pixels around the hole (8-connected, corners skipped).
        assert_eq!(
            sorted(cs[2].clone()),
            vec![(4, 2), (5, 1), (5, 3), (6, 1), (6, 3), (7, 2)]
        );
        assert_eq!(sorted(cs[3].clone()).len(), 10);
        assert_eq!(sorted(cs[4].clone()), vec![(0, 0), (0, 1), (1, 0), (1, 1)]);
    }

    #[test]
    fn touches_the_image_edge_and_diagonals() {
        let (m, w, h) = mask(&["#..", ".#.", "..#"]);
        let cs = find_contours(&m, w, h);
        assert_eq!(cs.len(), 1, "a diagonal line is one 8-connected border");
        assert_eq!(sorted(cs[0].clone()), vec![(0, 0), (1, 1), (2, 2)]);
    }
}
