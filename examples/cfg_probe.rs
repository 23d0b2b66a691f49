use ndarray::array;
use scoresde::gaussian::{GaussianMixture, MvGaussian};
use scoresde::guidance::ClassifierFree;
use scoresde::rng::seeded;
use scoresde::sampler::corrector::NoneCorrector;
use scoresde::sampler::pc::{pc_sample, PcConfig};
use scoresde::sampler::predictor::ReverseDiffusion;
use scoresde::sampler::Silent;
use scoresde::score::MixtureScore;
use scoresde::sde::VpSde;
fn main() {
    let a: Vec<f64> = std::env::args()
        .skip(1)
        .map(|s| s.parse().unwrap())
        .collect();
    let (mu, var) = (a[0], a[1]);
    let comp = |m: f64| MvGaussian::isotropic(array![m], var).unwrap();
    let full = GaussianMixture::new(array![0.5, 0.5], vec![comp(-mu), comp(mu)]).unwrap();
    let class = GaussianMixture::new(array![1.0], vec![comp(mu)]).unwrap();
    for w in [1.0 / 3.0, 1.0, 3.0] {
        let (h, mut z, mut m1, mut m2) = (1e-3, 0.0, 0.0, 0.0);
        for i in 0..=20_000 {
            let x = -10.0 + i as f64 * h;
            let aa = array![x];
            let l = (1.0 + w) * class.log_density(aa.view()).unwrap()
                - w * full.log_density(aa.view()).unwrap();
            let d = l.exp();
            z += d;
            m1 += d * x;
            m2 += d * x * x;
        }
        let tm = m1 / z;
        let tv = m2 / z - tm * tm;
        let (u, c) = (
            MixtureScore::new(full.clone()),
            MixtureScore::new(class.clone()),
        );
        let g = ClassifierFree::new(&c, &u, w).unwrap();
        let x = pc_sample(
            &VpSde::default(),
            &g,
            &ReverseDiffusion,
            &NoneCorrector,
            PcConfig::new(1000, 4000),
            &mut seeded(5),
            &mut Silent,
        )
        .unwrap()
        .x;
        let col = x.column(0);
        let n = col.len() as f64;
        let m = col.sum() / n;
        let v = col.iter().map(|a| (a - m).powi(2)).sum::<f64>() / (n - 1.0);
        println!("mu {mu} var {var} w {w:.3}: sampled mean {m:.4} var {v:.4} | tilted mean {tm:.4} var {tv:.4}");
    }
}
