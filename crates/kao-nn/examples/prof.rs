use std::time::Instant;
use burn_tensor::{Tensor, TensorData};
use kao_nn::{CpuBackend, ResNet};
use kao_nn::layers::*;
fn main() {
    let m = kao_dlib::ResnetModel::load("/root/.cache/kao/models/dlib_face_recognition_resnet_model_v1.dat").unwrap();
    let dev = Default::default();
    let net = ResNet::<CpuBackend>::from_model(&m, &dev).unwrap();
    for n in [1usize, 32] {
        let x = Tensor::<CpuBackend, 4>::from_data(TensorData::new(vec![0.1f32; n*3*150*150], [n,3,150,150]), &dev);
        let _ = net.forward(x.clone()).into_data();
        let t = Instant::now();
        for _ in 0..3 { let _ = net.forward(x.clone()).into_data(); }
        println!("n={n} forward {:.2} ms/face", t.elapsed().as_secs_f64()*1e3/3.0/n as f64);
        let kao_dlib::dat::Layer::Con(c) = &m.layers[0] else { panic!() };
        let conv = Conv2d::<CpuBackend>::from_dlib(c, None, &dev).unwrap();
        let t = Instant::now();
        for _ in 0..3 { let _ = conv.forward(x.clone()).into_data(); }
        println!("n={n} stem conv {:.2} ms/face", t.elapsed().as_secs_f64()*1e3/3.0/n as f64);
        let kao_dlib::dat::Layer::Con(c) = &m.layers[5] else { panic!() };
        let conv = Conv2d::<CpuBackend>::from_dlib(c, None, &dev).unwrap();
        let y = Tensor::<CpuBackend, 4>::from_data(TensorData::new(vec![0.1f32; n*32*35*35], [n,32,35,35]), &dev);
        let t = Instant::now();
        for _ in 0..3 { let _ = conv.forward(y.clone()).into_data(); }
        println!("n={n} conv 32x32x3x3 @35 {:.3} ms/face (x6 in net)", t.elapsed().as_secs_f64()*1e3/3.0/n as f64);
        let t = Instant::now();
        for _ in 0..3 { let _ = y.clone().add(y.clone()).into_data(); }
        println!("n={n} add @35x35x32 {:.3} ms/face", t.elapsed().as_secs_f64()*1e3/3.0/n as f64);
        let t = Instant::now();
        for _ in 0..3 { let _ = relu(y.clone()).into_data(); }
        println!("n={n} relu @35x35x32 {:.3} ms/face", t.elapsed().as_secs_f64()*1e3/3.0/n as f64);
    }
}
